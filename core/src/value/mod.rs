//! Shared values, like Python's `multiprocessing.Value` and `Array`:
//!
//! | type | Python | how |
//! |---|---|---|
//! | [`Value<T>`](Value) | `Value(typecode, v)` (`lock=True`) | a [`RawMutex`] and a `T` |
//! | [`AtomicValue<T>`](AtomicValue) | `Value(typecode, v, lock=False)`, but race-free | one 64-bit atomic, lock-free, for `T` of 1, 2, 4 or 8 bytes |
//! | [`Array<T>`](Array) | `Array(typecode, n)` | a [`RawMutex`] and `n` `T`s |
//!
//! All three sit in a region, `T: bytemuck::Pod`, and are built with
//! `create` by one process and found with `attach` by the others:
//!
//! ```text
//!  Value<T>        0 header | 128 RawMutex line | 256 T
//!  AtomicValue<T>  0 header | 128 u64 line (T's bits in the low bytes)
//!  Array<T>        0 header | 128 RawMutex line | 256 T[0] T[1] ... T[len-1]
//! ```
//!
//! The locked ones are robust like [`Mutex`]: a holder killed while holding
//! the lock poisons it (the value may be half-written), and the operations
//! report that as a [`PoisonError`] *after* doing their work, carrying their
//! result: `value.get().unwrap_or_else(PoisonError::into_inner)` reads the
//! value whatever happened.

use core::fmt;
use core::marker::PhantomData;
use core::mem::size_of;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use crate::mutex::{
    LockGuard, LockLine, LockResult, LockTimeoutError, Mutex, MutexGuard, PoisonError, RawMutex,
    TryLockError,
};
use crate::region::{AttachError, ElemType, InitError, Kind, Layout, Parts, Region, ShmSafe, Spec};
use crate::sync::{AtomicU64, Ordering};
use crate::time::Deadline;

// ---------------------------------------------------------------------------
// Value<T>
// ---------------------------------------------------------------------------

/// A lock-protected `T: Pod` in a region, like `multiprocessing.Value`.
///
/// The layout is the one of [`Mutex<T>`](Mutex) (under another
/// [`Kind`]), and [`lock`](Self::lock) returns the same
/// [`MutexGuard`], so a [`Condvar`](crate::condvar::Condvar) works with it.
///
/// # Examples
///
/// ```
/// use multiproc_core::region::Region;
/// use multiproc_core::value::Value;
///
/// #[repr(C, align(128))]
/// struct Mem([u8; 512]);
/// let mut mem = Box::new(Mem([0; 512]));
/// let v = Value::<f64>::create(Region::from_mut_slice(&mut mem.0), 1.5).unwrap();
/// v.set(2.5).unwrap();
/// v.update(|x| *x *= 2.0).unwrap();
/// assert_eq!(v.get().unwrap(), 5.0);
/// ```
pub struct Value<'a, T: Pod> {
    inner: Mutex<'a, T>,
}

impl<T: Pod> Clone for Value<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Pod> Copy for Value<'_, T> {}

impl<T: Pod> fmt::Debug for Value<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("owner_pid", &self.inner.raw().owner_pid())
            .field("poison", &self.inner.raw().poison_cause())
            .finish_non_exhaustive()
    }
}

impl<'a, T: Pod> Value<'a, T> {
    /// Bytes a `Value<T>` occupies in a region, header included.
    pub fn memory_size() -> Option<usize> {
        Mutex::<T>::memory_size()
    }

    /// Builds a value holding `init` in `region`.
    ///
    /// # Errors
    ///
    /// [`InitError`] if the region is too small, misaligned or already
    /// initialised.
    pub fn create(region: Region<'a>, init: T) -> Result<Self, InitError> {
        Self::create_tagged(region, init, 0)
    }

    /// As [`create`](Self::create), recording a user `tag` for the element
    /// type that [`attach_tagged_timeout`](Self::attach_tagged_timeout) must
    /// match.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_tagged(region: Region<'a>, init: T, tag: u64) -> Result<Self, InitError> {
        Ok(Self {
            inner: Mutex::create_as(region, init, Kind::Value, tag)?,
        })
    }

    crate::region::attach_fns!('a, "a value");

    fn open(region: Region<'a>, tag: u64, deadline: Option<Deadline>) -> Result<Self, AttachError> {
        Ok(Self {
            inner: Mutex::open_as(region, Kind::Value, tag, deadline)?,
        })
    }

    /// Locks the value for several operations in a row.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`].
    #[inline]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.inner.lock()
    }

    /// Locks if free, without waiting.
    ///
    /// # Errors
    ///
    /// As [`Mutex::try_lock`].
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError<MutexGuard<'_, T>>> {
        self.inner.try_lock()
    }

    /// Locks, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock_timeout`].
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<MutexGuard<'_, T>, LockTimeoutError<MutexGuard<'_, T>>> {
        self.inner.lock_timeout(timeout)
    }

    /// A copy of the value.
    ///
    /// # Errors
    ///
    /// [`PoisonError`] holding the value read if the lock is poisoned (it
    /// may be half-written by a holder that died).
    #[inline]
    pub fn get(&self) -> LockResult<T> {
        match self.inner.lock() {
            Ok(g) => Ok(*g),
            Err(p) => Err(p.map(|g| *g)),
        }
    }

    /// As [`get`](Self::get), waiting at most `timeout` for the lock.
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::TimedOut`] if a live process held the lock
    /// throughout; `Poisoned` (holding the value) as for `get`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, LockTimeoutError<T>> {
        match self.inner.lock_timeout(timeout) {
            Ok(g) => Ok(*g),
            Err(e) => Err(e.map(|g| *g)),
        }
    }

    /// Replaces the value.
    ///
    /// # Errors
    ///
    /// [`PoisonError`] if the lock was poisoned; `v` is stored all the same
    /// (the poison stays until [`clear_poison`](Self::clear_poison)).
    #[inline]
    pub fn set(&self, v: T) -> LockResult<()> {
        self.update(|x| *x = v)
    }

    /// As [`set`](Self::set), waiting at most `timeout` for the lock.
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::TimedOut`] (nothing stored) or `Poisoned`
    /// (stored) as for `set`.
    pub fn set_timeout(&self, v: T, timeout: Duration) -> Result<(), LockTimeoutError<()>> {
        self.update_timeout(timeout, |x| *x = v)
    }

    /// Runs `f` on the value under the lock (a read-modify-write such as
    /// `+= 1`, which `get` then `set` would not make atomic).
    ///
    /// # Errors
    ///
    /// [`PoisonError`] holding `f`'s result if the lock was poisoned; `f`
    /// has run all the same.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> LockResult<R> {
        match self.inner.lock() {
            Ok(mut g) => Ok(f(&mut g)),
            Err(p) => Err(p.map(|mut g| f(&mut g))),
        }
    }

    /// As [`update`](Self::update), waiting at most `timeout` for the lock.
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::TimedOut`] (`f` not run) or `Poisoned` (`f` run)
    /// as for `update`.
    pub fn update_timeout<R>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, LockTimeoutError<R>> {
        match self.inner.lock_timeout(timeout) {
            Ok(mut g) => Ok(f(&mut g)),
            Err(e) => Err(e.map(|mut g| f(&mut g))),
        }
    }

    /// Whether the lock is poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.inner.is_poisoned()
    }

    /// Clears the poison (best done under the lock, after repair).
    pub fn clear_poison(&self) {
        self.inner.clear_poison();
    }

    /// The underlying lock.
    pub fn raw(&self) -> &'a RawMutex {
        self.inner.raw()
    }
}

// ---------------------------------------------------------------------------
// AtomicValue<T>
// ---------------------------------------------------------------------------

/// The value's 64-bit word alone on its 128-byte line.
#[repr(C, align(128))]
#[derive(Debug)]
struct AtomicLine {
    bits: AtomicU64,
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(AtomicLine, [u8; 128]);
static_assertions::const_assert_eq!(core::mem::align_of::<AtomicLine>(), 128);

// SAFETY: repr(C) holding one 64-bit atomic plus padding; size pinned.
unsafe impl ShmSafe for AtomicLine {}

/// The mask of the bits a `size`-byte value occupies, if supported.
const fn width_mask(size: usize) -> Option<u64> {
    match size {
        1 => Some(0xff),
        2 => Some(0xffff),
        4 => Some(0xffff_ffff),
        8 => Some(u64::MAX),
        _ => None,
    }
}

/// `v`'s bytes as the integer of its width, zero-extended: an integer `T`
/// is its own value (on any endianness), so 64-bit arithmetic on the word
/// wraps like `T`'s once truncated.
fn encode<T: Pod>(v: T) -> u64 {
    let b = bytemuck::bytes_of(&v);
    match b.len() {
        1 => u64::from(b[0]),
        2 => u64::from(bytemuck::pod_read_unaligned::<u16>(b)),
        4 => u64::from(bytemuck::pod_read_unaligned::<u32>(b)),
        8 => bytemuck::pod_read_unaligned::<u64>(b),
        // Unreachable: create and attach refuse other sizes.
        _ => 0,
    }
}

/// The `T` in the low bits of `bits`; bits above its width are ignored
/// (another process may have written garbage there).
fn decode<T: Pod>(bits: u64) -> T {
    let read = |b: &[u8]| bytemuck::try_pod_read_unaligned::<T>(b).unwrap_or_else(|_| T::zeroed());
    match size_of::<T>() {
        1 => read(&[bits as u8]),
        2 => read(&(bits as u16).to_ne_bytes()),
        4 => read(&(bits as u32).to_ne_bytes()),
        8 => read(&bits.to_ne_bytes()),
        // Unreachable: create and attach refuse other sizes.
        _ => T::zeroed(),
    }
}

/// A lock-free `T: Pod` of 1, 2, 4 or 8 bytes in a region, stored in one
/// 64-bit atomic.
///
/// Every operation is sequentially consistent. `compare_exchange` compares
/// bit patterns (so for floats `-0.0 != 0.0` and a NaN equals itself).
/// Integer types also have [`fetch_add`](AtomicValue::<u64>::fetch_add) and
/// `fetch_sub`, wrapping.
///
/// # Examples
///
/// ```
/// use multiproc_core::region::Region;
/// use multiproc_core::value::AtomicValue;
///
/// #[repr(C, align(128))]
/// struct Mem([u8; 512]);
/// let mut mem = Box::new(Mem([0; 512]));
/// let n = AtomicValue::<i32>::create(Region::from_mut_slice(&mut mem.0), 5).unwrap();
/// assert_eq!(n.fetch_add(2), 5);
/// assert_eq!(n.compare_exchange(7, -1), Ok(7));
/// assert_eq!(n.fetch_update(|x| (x < 0).then_some(x * 10)), Ok(-1));
/// assert_eq!(n.load(), -10);
/// ```
pub struct AtomicValue<'a, T: Pod> {
    bits: &'a AtomicU64,
    _value: PhantomData<T>,
}

impl<T: Pod> Clone for AtomicValue<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Pod> Copy for AtomicValue<'_, T> {}

impl<T: Pod> fmt::Debug for AtomicValue<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicValue")
            .field("bits", &format_args!("{:#x}", self.raw_bits()))
            .finish()
    }
}

impl<'a, T: Pod> AtomicValue<'a, T> {
    /// The mask of `T`'s bits in the word (`None`: size not supported).
    const MASK: Option<u64> = width_mask(size_of::<T>());

    /// Bytes an `AtomicValue<T>` occupies in a region, header included;
    /// `None` if `T` is not 1, 2, 4 or 8 bytes.
    pub fn memory_size() -> Option<usize> {
        Self::MASK?;
        Layout::of::<AtomicLine, u8>(0).map(|l| l.total)
    }

    /// Builds the value holding `init` in `region`.
    ///
    /// # Errors
    ///
    /// [`InitError::UnsupportedType`] if `T` is not 1, 2, 4 or 8 bytes;
    /// otherwise as for any region (too small, misaligned, initialised).
    pub fn create(region: Region<'a>, init: T) -> Result<Self, InitError> {
        Self::create_tagged(region, init, 0)
    }

    /// As [`create`](Self::create), recording a user `tag` for the element
    /// type that [`attach_tagged_timeout`](Self::attach_tagged_timeout) must
    /// match.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_tagged(region: Region<'a>, init: T, tag: u64) -> Result<Self, InitError> {
        if Self::MASK.is_none() {
            return Err(InitError::UnsupportedType);
        }
        let spec = Spec {
            kind: Kind::AtomicValue,
            elem: ElemType::of::<T>().tagged(tag),
            capacity: 1,
            count: 0,
        };
        let parts = Parts::<AtomicLine, u8>::create(
            region,
            spec,
            || AtomicLine {
                bits: AtomicU64::new(encode(init)),
            },
            |_| 0,
        )?;
        Ok(Self::from_parts(parts))
    }

    crate::region::attach_fns!('a, "an atomic value", "`TypeMismatch` also for a `T` that is not 1, 2, 4 or 8 bytes.");

    fn open(region: Region<'a>, tag: u64, deadline: Option<Deadline>) -> Result<Self, AttachError> {
        let parts = Parts::<AtomicLine, u8>::open(
            region,
            Kind::AtomicValue,
            ElemType::of::<T>().tagged(tag),
            |c| (c == 1).then_some(0),
            deadline,
        )?;
        if Self::MASK.is_none() {
            // Only a forged header can name such a type: no create makes one.
            return Err(AttachError::TypeMismatch {
                found: parts.header.elem_type(),
                expected: ElemType::of::<T>().tagged(tag),
            });
        }
        Ok(Self::from_parts(parts))
    }

    fn from_parts(parts: Parts<'a, AtomicLine, u8>) -> Self {
        Self {
            bits: &parts.body.bits,
            _value: PhantomData,
        }
    }

    fn raw_bits(&self) -> u64 {
        // Relaxed: a snapshot for Debug.
        self.bits.load(Ordering::Relaxed)
    }

    /// The value.
    #[inline]
    pub fn load(&self) -> T {
        decode(self.bits.load(Ordering::SeqCst))
    }

    /// Replaces the value.
    #[inline]
    pub fn store(&self, v: T) {
        self.bits.store(encode(v), Ordering::SeqCst);
    }

    /// Replaces the value, returning the old one.
    #[inline]
    pub fn swap(&self, v: T) -> T {
        decode(self.bits.swap(encode(v), Ordering::SeqCst))
    }

    /// Stores `new` if the value is bitwise equal to `current`.
    ///
    /// # Errors
    ///
    /// The value found, if it differs from `current`.
    #[inline]
    pub fn compare_exchange(&self, current: T, new: T) -> Result<T, T> {
        let mask = Self::MASK.unwrap_or(u64::MAX);
        let (want, new) = (encode(current), encode(new));
        let mut seen = want;
        loop {
            match self
                .bits
                .compare_exchange(seen, new, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Ok(current),
                // Equal in T's bits, garbage above them (another process
                // wrote it): compare T's bits only, retry with the real word.
                Err(now) if now & mask == want && now != seen => seen = now,
                Err(now) => return Err(decode(now)),
            }
        }
    }

    /// Applies `f` until it returns `None` or its result is stored without
    /// interference (a CAS loop). Returns the previous value, as `Ok` if
    /// `f` produced a new one.
    ///
    /// # Errors
    ///
    /// The value `f` refused (returned `None` for).
    pub fn fetch_update(&self, mut f: impl FnMut(T) -> Option<T>) -> Result<T, T> {
        let mut seen = self.bits.load(Ordering::SeqCst);
        loop {
            let old = decode::<T>(seen);
            let Some(new) = f(old) else {
                return Err(old);
            };
            match self.bits.compare_exchange_weak(
                seen,
                encode(new),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Ok(old),
                Err(now) => seen = now,
            }
        }
    }
}

macro_rules! atomic_arith {
    // 64-bit integers: the hardware's wrapping add on the whole word.
    (native $($t:ty),*) => {$(
        impl AtomicValue<'_, $t> {
            /// Adds `v` (wrapping), returning the old value.
            #[inline]
            pub fn fetch_add(&self, v: $t) -> $t {
                decode(self.bits.fetch_add(encode(v), Ordering::SeqCst))
            }
            /// Subtracts `v` (wrapping), returning the old value.
            #[inline]
            pub fn fetch_sub(&self, v: $t) -> $t {
                decode(self.bits.fetch_sub(encode(v), Ordering::SeqCst))
            }
        }
    )*};
    // Narrower integers: a CAS loop, so a carry never leaks into the bits
    // above the value.
    (cas $($t:ty),*) => {$(
        impl AtomicValue<'_, $t> {
            /// Adds `v` (wrapping), returning the old value.
            #[inline]
            pub fn fetch_add(&self, v: $t) -> $t {
                match self.fetch_update(|x| Some(x.wrapping_add(v))) {
                    Ok(old) | Err(old) => old,
                }
            }
            /// Subtracts `v` (wrapping), returning the old value.
            #[inline]
            pub fn fetch_sub(&self, v: $t) -> $t {
                match self.fetch_update(|x| Some(x.wrapping_sub(v))) {
                    Ok(old) | Err(old) => old,
                }
            }
        }
    )*};
}

atomic_arith!(native u64, i64);
atomic_arith!(cas u32, i32, u16, i16, u8, i8);

// ---------------------------------------------------------------------------
// Array<T>
// ---------------------------------------------------------------------------

/// One array element in shared memory: a plain `T`, reached only through
/// raw pointers while the array's lock is held.
///
/// Not the facade's `UnsafeCell`: a guard hands out one contiguous
/// `&mut [T]`, which loom's cells (tracking state beside each value) cannot
/// form. The array's exclusion is its [`RawMutex`]'s, which the loom models
/// of the mutex check.
#[repr(transparent)]
struct ArrayElem<T>(T);

// SAFETY: repr(transparent) over a T: Pod: no pointers that matter (a Pod
// pointer is only bits here, never dereferenced by this crate), valid for
// every bit pattern; never referenced except under the array's lock.
unsafe impl<T: Pod> ShmSafe for ArrayElem<T> {}

/// Why an [`Array`] operation failed, or succeeded on a poisoned lock.
pub enum ArrayError<G> {
    /// The index is not below the length. Nothing was done.
    OutOfBounds {
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// The slice's length differs from the array's. Nothing was done.
    LengthMismatch {
        /// The array's length.
        array: usize,
        /// The slice's length.
        slice: usize,
    },
    /// The operation was done, but the lock is poisoned: the payload is its
    /// result (the value read, or `()`).
    Poisoned(PoisonError<G>),
}

impl<G> From<PoisonError<G>> for ArrayError<G> {
    fn from(e: PoisonError<G>) -> Self {
        ArrayError::Poisoned(e)
    }
}

impl<G> fmt::Debug for ArrayError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArrayError::OutOfBounds { index, len } => f
                .debug_struct("OutOfBounds")
                .field("index", index)
                .field("len", len)
                .finish(),
            ArrayError::LengthMismatch { array, slice } => f
                .debug_struct("LengthMismatch")
                .field("array", array)
                .field("slice", slice)
                .finish(),
            ArrayError::Poisoned(p) => f.debug_tuple("Poisoned").field(p).finish(),
        }
    }
}

impl<G> fmt::Display for ArrayError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArrayError::OutOfBounds { index, len } => {
                write!(f, "index {index} out of bounds for array of length {len}")
            }
            ArrayError::LengthMismatch { array, slice } => write!(
                f,
                "slice of length {slice} does not match array of length {array}"
            ),
            ArrayError::Poisoned(p) => fmt::Display::fmt(p, f),
        }
    }
}

impl<G> core::error::Error for ArrayError<G> {}

/// A lock-protected array of `T: Pod` in a region, like
/// `multiprocessing.Array`. Its length is fixed at creation and may be 0
/// (as in Python).
///
/// # Examples
///
/// ```
/// use multiproc_core::region::Region;
/// use multiproc_core::value::{Array, ArrayError};
///
/// #[repr(C, align(128))]
/// struct Mem([u8; 512]);
/// let mut mem = Box::new(Mem([0; 512]));
/// let a = Array::<u16>::create(Region::from_mut_slice(&mut mem.0), 4, 7).unwrap();
/// a.set(1, 8).unwrap();
/// a.lock().unwrap()[2..].copy_from_slice(&[9, 10]);
/// let mut out = [0; 4];
/// a.copy_to_slice(&mut out).unwrap();
/// assert_eq!(out, [7, 8, 9, 10]);
/// assert!(matches!(a.get(4), Err(ArrayError::OutOfBounds { index: 4, len: 4 })));
/// ```
pub struct Array<'a, T: Pod> {
    raw: &'a RawMutex,
    elems: NonNull<T>,
    len: usize,
    _elems: PhantomData<&'a [T]>,
}

impl<T: Pod> Clone for Array<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Pod> Copy for Array<'_, T> {}

// SAFETY: the elements are reached only under the lock, as in Mutex<T>;
// the pointer is into the region, valid for 'a in every thread.
unsafe impl<T: Pod + Send> Send for Array<'_, T> {}
// SAFETY: as for Send.
unsafe impl<T: Pod + Send> Sync for Array<'_, T> {}

impl<T: Pod> fmt::Debug for Array<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.len)
            .field("owner_pid", &self.raw.owner_pid())
            .field("poison", &self.raw.poison_cause())
            .finish_non_exhaustive()
    }
}

impl<'a, T: Pod> Array<'a, T> {
    /// Bytes an `Array<T>` of `len` elements occupies in a region, header
    /// included (`None` if it overflows the address space).
    pub fn memory_size(len: usize) -> Option<usize> {
        Layout::of::<LockLine, ArrayElem<T>>(u64::try_from(len).ok()?).map(|l| l.total)
    }

    /// Builds an array of `len` copies of `fill` in `region`.
    ///
    /// # Errors
    ///
    /// [`InitError::CapacityOverflow`] if `len` elements overflow the
    /// address space; otherwise as for any region.
    pub fn create(region: Region<'a>, len: usize, fill: T) -> Result<Self, InitError> {
        Self::create_tagged(region, len, fill, 0)
    }

    /// As [`create`](Self::create), recording a user `tag` for the element
    /// type that [`attach_tagged_timeout`](Self::attach_tagged_timeout) must
    /// match.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub fn create_tagged(
        region: Region<'a>,
        len: usize,
        fill: T,
        tag: u64,
    ) -> Result<Self, InitError> {
        let capacity =
            u64::try_from(len).map_err(|_| InitError::CapacityOverflow { capacity: u64::MAX })?;
        let spec = Spec {
            kind: Kind::Array,
            elem: ElemType::of::<T>().tagged(tag),
            capacity,
            count: capacity,
        };
        let parts = Parts::create(region, spec, LockLine::new, |_| ArrayElem(fill))?;
        Ok(Self::from_parts(parts))
    }

    crate::region::attach_fns!('a, "an array");

    fn open(region: Region<'a>, tag: u64, deadline: Option<Deadline>) -> Result<Self, AttachError> {
        // The length read from the header is untrusted: `open` checks that
        // the layout it implies fits the region before we use it.
        let parts = Parts::<LockLine, ArrayElem<T>>::open(
            region,
            Kind::Array,
            ElemType::of::<T>().tagged(tag),
            Some,
            deadline,
        )?;
        Ok(Self::from_parts(parts))
    }

    fn from_parts(parts: Parts<'a, LockLine, ArrayElem<T>>) -> Self {
        Self {
            raw: &parts.body.lock,
            // ArrayElem<T> is repr(transparent) over T.
            elems: parts.array.cast::<T>(),
            len: parts.count,
            _elems: PhantomData,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn guard(&self) -> ArrayGuard<'_, T> {
        ArrayGuard {
            raw: self.raw,
            elems: self.elems,
            len: self.len,
            _elems: PhantomData,
            _not_send: PhantomData,
        }
    }

    /// Locks the array, giving access to every element as a slice.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock`]: a [`PoisonError`] holding the guard.
    #[inline]
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        match self.raw.lock() {
            Ok(()) => Ok(self.guard()),
            Err(p) => Err(p.map(|()| self.guard())),
        }
    }

    /// Locks if free, without waiting.
    ///
    /// # Errors
    ///
    /// As [`Mutex::try_lock`].
    pub fn try_lock(&self) -> Result<ArrayGuard<'_, T>, TryLockError<ArrayGuard<'_, T>>> {
        match self.raw.try_lock() {
            Ok(()) => Ok(self.guard()),
            Err(e) => Err(e.map(|()| self.guard())),
        }
    }

    /// Locks, giving up after `timeout`. The element operations below
    /// block; for a bounded wait, use this and index the guard.
    ///
    /// # Errors
    ///
    /// As [`Mutex::lock_timeout`].
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ArrayGuard<'_, T>, LockTimeoutError<ArrayGuard<'_, T>>> {
        match self.raw.lock_timeout(timeout) {
            Ok(()) => Ok(self.guard()),
            Err(e) => Err(e.map(|()| self.guard())),
        }
    }

    /// Runs `f` on the elements under the lock, reporting poison with its
    /// result.
    fn with<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R, ArrayError<R>> {
        match self.lock() {
            Ok(mut g) => Ok(f(&mut g)),
            Err(p) => Err(ArrayError::Poisoned(p.map(|mut g| f(&mut g)))),
        }
    }

    /// A copy of element `index`.
    ///
    /// # Errors
    ///
    /// [`ArrayError::OutOfBounds`]; [`ArrayError::Poisoned`] holding the
    /// value read if the lock is poisoned.
    pub fn get(&self, index: usize) -> Result<T, ArrayError<T>> {
        if index >= self.len {
            return Err(ArrayError::OutOfBounds {
                index,
                len: self.len,
            });
        }
        // The bounds check above makes the fallback unreachable.
        self.with(|a| a.get(index).copied().unwrap_or_else(T::zeroed))
    }

    /// Replaces element `index`.
    ///
    /// # Errors
    ///
    /// [`ArrayError::OutOfBounds`] (nothing stored);
    /// [`ArrayError::Poisoned`] if the lock is poisoned (stored all the
    /// same).
    pub fn set(&self, index: usize, v: T) -> Result<(), ArrayError<()>> {
        if index >= self.len {
            return Err(ArrayError::OutOfBounds {
                index,
                len: self.len,
            });
        }
        self.with(|a| {
            if let Some(x) = a.get_mut(index) {
                *x = v;
            }
        })
    }

    /// Copies every element into `dst`, whose length must equal the
    /// array's.
    ///
    /// # Errors
    ///
    /// [`ArrayError::LengthMismatch`] (nothing copied);
    /// [`ArrayError::Poisoned`] if the lock is poisoned (copied all the
    /// same).
    pub fn copy_to_slice(&self, dst: &mut [T]) -> Result<(), ArrayError<()>> {
        if dst.len() != self.len {
            return Err(ArrayError::LengthMismatch {
                array: self.len,
                slice: dst.len(),
            });
        }
        self.with(|a| dst.copy_from_slice(a))
    }

    /// Overwrites every element from `src`, whose length must equal the
    /// array's.
    ///
    /// # Errors
    ///
    /// [`ArrayError::LengthMismatch`] (nothing copied);
    /// [`ArrayError::Poisoned`] if the lock is poisoned (copied all the
    /// same).
    pub fn copy_from_slice(&self, src: &[T]) -> Result<(), ArrayError<()>> {
        if src.len() != self.len {
            return Err(ArrayError::LengthMismatch {
                array: self.len,
                slice: src.len(),
            });
        }
        self.with(|a| a.copy_from_slice(src))
    }

    /// Whether the lock is poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.raw.is_poisoned()
    }

    /// Clears the poison (best done under the lock, after repair).
    pub fn clear_poison(&self) {
        self.raw.clear_poison();
    }

    /// The underlying lock.
    pub fn raw(&self) -> &'a RawMutex {
        self.raw
    }
}

/// Holds an [`Array`] locked; derefs to its elements; unlocks on drop.
///
/// Not `Send`, as [`crate::mutex::MutexGuard`]:
///
/// ```compile_fail,E0277
/// # use multiproc_core::{region::Region, value::Array};
/// # #[repr(C, align(128))] struct Mem([u8; 1024]);
/// # let mem: &'static mut Mem = Box::leak(Box::new(Mem([0; 1024])));
/// let a: &'static Array<'static, u16> =
///     Box::leak(Box::new(Array::create(Region::from_mut_slice(&mut mem.0), 4, 7).unwrap()));
/// let mut guard = a.lock().unwrap();
/// std::thread::spawn(move || guard[0] = 1); // error: the guard is not `Send`
/// ```
#[must_use = "if unused the array unlocks at once"]
pub struct ArrayGuard<'m, T: Pod> {
    raw: &'m RawMutex,
    elems: NonNull<T>,
    len: usize,
    /// Behaves like an exclusive borrow of the elements.
    _elems: PhantomData<&'m mut [T]>,
    /// Stays with the locking thread: not `Send` (see
    /// [`MutexGuard`](crate::mutex::MutexGuard)).
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard gives only &[T] (and `poison`, an atomic store);
// the `*const ()` marker is there for `Send` alone.
unsafe impl<T: Pod + Sync> Sync for ArrayGuard<'_, T> {}

impl<T: Pod> ArrayGuard<'_, T> {
    /// Marks the lock poisoned (see [`MutexGuard::poison`]).
    pub fn poison(&self) {
        self.raw.poison();
    }
}

// SAFETY: an ArrayGuard exists only while this process holds `raw` (built
// after a successful lock), and its Drop unlocks exactly that mutex.
unsafe impl<T: Pod> LockGuard for ArrayGuard<'_, T> {
    fn raw_mutex(&self) -> &RawMutex {
        self.raw
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `elems` points to `len` initialised Ts inside the region
        // (create wrote them; attach checked the layout fits), aligned
        // (Layout::of); this process holds the lock, so nobody else touches
        // them while the guard lives.
        unsafe { core::slice::from_raw_parts(self.elems.as_ptr(), self.len) }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference
        // the guard hands out.
        unsafe { core::slice::from_raw_parts_mut(self.elems.as_ptr(), self.len) }
    }
}

impl<T: Pod> Drop for ArrayGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard exists only while this process holds the lock.
        unsafe { self.raw.unlock() };
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests;

#[cfg(all(test, multiproc_loom))]
mod loom;

#[cfg(all(test, multiproc_loom))]
mod loom_array_lock;
