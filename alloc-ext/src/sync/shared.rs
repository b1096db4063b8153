//! [`Shared<K>`]: the one owning handle type behind every handle of this
//! module, as lock_api's `Mutex<R, T>` is behind every raw mutex.
//!
//! A kind `K` ([`SharedKind`], sealed) names the core structure built in
//! the segment, what its constructors take, its stamp ([`HandleKind`] and
//! element type) and how it is built and found; `Shared<K>` owns the
//! segment and the view, and gives what every handle has: `Clone`,
//! `Debug`, [`open`](Shared::open), [`attach`](Shared::attach),
//! [`name`](Shared::name), [`shm`](Shared::shm). Each handle
//! ([`Lock`](super::Lock), [`Semaphore`](super::Semaphore), ...) is a type
//! alias of `Shared` over its kind, with only its own methods.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use bytemuck::Pod;
use multiproc_core::region::{AttachError, InitError, Region};
use multiproc_core::{barrier, event, mutex, semaphore, value};

use super::{map, HandleKind, Owned, SyncError, OPEN_WAIT};
use crate::shm::SharedMemory;

/// A process-shared structure in a segment of its own, owned by the
/// handle (and its clones): every handle of [`sync`](super) is a `Shared`
/// of its [`SharedKind`].
pub struct Shared<K: SharedKind>(Arc<Owned<K::View>>);

/// What a [`Shared`] handle holds: one kind per handle ([`LockKind`],
/// [`SemaphoreKind`], ...). Sealed: the kinds of this crate are all there
/// is.
pub trait SharedKind: kind::Kind {}

pub(super) mod kind {
    use super::*;

    /// The machinery of a [`SharedKind`](super::SharedKind), out of users'
    /// reach.
    // `pub` in a private module: the associated type of a public trait
    // must be public (E0446), and so must its trait.
    #[allow(unreachable_pub)]
    pub trait Kind: Sized + 'static {
        /// The core structure (or structures) built in the segment.
        type View;
        /// What the constructors take.
        type Init;
        /// The element type recorded in the stamp (`()` without data).
        type Elem;
        /// The stamp's handle.
        const HANDLE: HandleKind;
        /// Bytes of the segment for `init` (`None` if it overflows).
        fn memory_size(init: &Self::Init) -> Option<usize>;
        /// Builds the view in `r`, its first region stamped with `tag`.
        fn create(r: Region<'static>, init: Self::Init, tag: u64) -> Result<Self::View, InitError>;
        /// Finds the view in `r`, whose first region is stamped `tag`,
        /// waiting up to [`OPEN_WAIT`] for its creator.
        fn attach(r: Region<'static>, tag: u64) -> Result<Self::View, AttachError>;
        /// The kind's own fields of `Debug`.
        fn debug(view: &Self::View, d: &mut fmt::DebugStruct<'_, '_>);
    }
}

impl<K: SharedKind> Clone for Shared<K> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<K: SharedKind> fmt::Debug for Shared<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct(K::HANDLE.name());
        d.field("name", &self.name());
        K::debug(self.view(), &mut d);
        d.finish()
    }
}

impl<K: SharedKind> Shared<K> {
    /// Makes the structure for `init` in a new segment: anonymous
    /// (`name` `None`) or named.
    pub(super) fn build(name: Option<&str>, init: K::Init) -> Result<Self, SyncError> {
        let shm = map(name, K::memory_size(&init))?;
        Self::build_in(shm, init)
    }

    /// Makes the structure for `init` in `shm`.
    pub(super) fn build_in(shm: SharedMemory, init: K::Init) -> Result<Self, SyncError> {
        let tag = K::HANDLE.tag::<K::Elem>();
        Ok(Self(Arc::new(Owned::create(shm, |r| {
            K::create(r, init, tag)
        })?)))
    }

    /// The view, borrowed no longer than `self`.
    pub(super) fn view(&self) -> &K::View {
        self.0.view()
    }

    /// Opens the handle's structure in the named segment `name`, waiting up
    /// to [`OPEN_WAIT`] for its creator to publish it.
    ///
    /// # Errors
    ///
    /// [`SyncError::Shm`] if there is no such segment;
    /// [`SyncError::WrongType`] if it holds another handle, or this handle
    /// over another element type; [`SyncError::Attach`] if it holds no
    /// published structure (not ready in time, too small, corrupt).
    pub fn open(name: &str) -> Result<Self, SyncError> {
        Self::attach(SharedMemory::open(name)?)
    }

    /// Finds the handle's structure in `shm`, waiting up to [`OPEN_WAIT`]
    /// for its creator to publish it.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), but for the name.
    pub fn attach(shm: SharedMemory) -> Result<Self, SyncError> {
        let stamp = K::HANDLE.stamp::<K::Elem>();
        Owned::attach(shm, stamp, |r| K::attach(r, stamp.elem.tag)).map(|o| Self(Arc::new(o)))
    }

    /// The segment's name (`None` when anonymous).
    pub fn name(&self) -> Option<&str> {
        self.0.shm().name()
    }

    /// The segment this handle owns.
    pub fn shm(&self) -> &SharedMemory {
        self.0.shm()
    }
}

/// Declares a kind: its type, docs and `SharedKind` impl.
macro_rules! kinds {
    ($($(#[$m:meta])* $name:ident $(<$t:ident>)?;)*) => {$(
        $(#[$m])*
        pub struct $name$(<$t>)?($(PhantomData<fn() -> $t>)?);
        impl$(<$t>)? fmt::Debug for $name$(<$t>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(stringify!($name))
            }
        }
    )*};
}

kinds! {
    /// The kind of [`Mutex<T>`](super::Mutex).
    MutexKind<T>;
    /// The kind of [`Lock`](super::Lock).
    LockKind;
    /// The kind of [`RLock`](super::RLock).
    RLockKind;
    /// The kind of [`Condition<T>`](super::Condition).
    ConditionKind<T>;
    /// The kind of [`Semaphore`](super::Semaphore).
    SemaphoreKind;
    /// The kind of [`BoundedSemaphore`](super::BoundedSemaphore).
    BoundedSemaphoreKind;
    /// The kind of [`Event`](super::Event).
    EventKind;
    /// The kind of [`Barrier`](super::Barrier).
    BarrierKind;
    /// The kind of [`Value<T>`](super::Value).
    ValueKind<T>;
    /// The kind of [`AtomicValue<T>`](super::AtomicValue).
    AtomicValueKind<T>;
    /// The kind of [`Array<T>`](super::Array).
    ArrayKind<T>;
}

/// The kind of a handle over one core structure with `create_tagged` and
/// `attach_tagged_timeout`.
macro_rules! one_region {
    (
        $kind:ty, [$($g:tt)*], view: $view:ty, init: $init:ty, elem: $elem:ty,
        handle: $handle:ident,
        size: |$si:pat_param| $size:expr,
        create: |$r:ident, $i:pat_param, $tag:ident| $create:expr,
        attach: $attach:path,
        debug: |$v:ident, $d:ident| $debug:expr $(,)?
    ) => {
        impl<$($g)*> SharedKind for $kind {}
        impl<$($g)*> kind::Kind for $kind {
            type View = $view;
            type Init = $init;
            type Elem = $elem;
            const HANDLE: HandleKind = HandleKind::$handle;
            fn memory_size($si: &$init) -> Option<usize> {
                $size
            }
            fn create($r: Region<'static>, $i: $init, $tag: u64) -> Result<$view, InitError> {
                $create
            }
            fn attach(r: Region<'static>, tag: u64) -> Result<$view, AttachError> {
                $attach(r, tag, OPEN_WAIT)
            }
            fn debug($v: &$view, $d: &mut fmt::DebugStruct<'_, '_>) {
                $debug;
            }
        }
    };
}

one_region!(MutexKind<T>, [T: Pod], view: mutex::Mutex<'static, T>, init: T, elem: T,
    handle: Mutex,
    size: |_| mutex::Mutex::<T>::memory_size(),
    create: |r, init, tag| mutex::Mutex::create_tagged(r, init, tag),
    attach: mutex::Mutex::attach_tagged_timeout,
    debug: |v, d| d.field("core", v),
);

one_region!(LockKind, [], view: mutex::Mutex<'static, ()>, init: (), elem: (),
    handle: Lock,
    size: |_| mutex::Mutex::<()>::memory_size(),
    create: |r, (), tag| mutex::Mutex::create_tagged(r, (), tag),
    attach: mutex::Mutex::attach_tagged_timeout,
    debug: |v, d| d.field("core", v),
);

one_region!(SemaphoreKind, [], view: semaphore::Semaphore<'static>, init: (u32, u32), elem: (),
    handle: Semaphore,
    size: |&(_, holders)| Some(semaphore::Semaphore::memory_size_for(holders)),
    create: |r, (initial, holders), tag| {
        semaphore::Semaphore::create_with(r, initial, false, holders, tag)
    },
    attach: semaphore::Semaphore::attach_tagged_timeout,
    debug: |v, d| d.field("value", &v.value()),
);

one_region!(BoundedSemaphoreKind, [], view: semaphore::Semaphore<'static>, init: (u32, u32),
    elem: (),
    handle: BoundedSemaphore,
    size: |&(_, holders)| Some(semaphore::Semaphore::memory_size_for(holders)),
    create: |r, (initial, holders), tag| {
        semaphore::Semaphore::create_with(r, initial, true, holders, tag)
    },
    attach: semaphore::Semaphore::attach_tagged_timeout,
    debug: |v, d| d.field("value", &v.value()).field("max", &v.max_value().unwrap_or(0)),
);

one_region!(EventKind, [], view: event::Event<'static>, init: (), elem: (),
    handle: Event,
    size: |_| Some(event::Event::memory_size()),
    create: |r, (), tag| event::Event::create_tagged(r, tag),
    attach: event::Event::attach_tagged_timeout,
    debug: |v, d| d.field("set", &v.is_set()),
);

one_region!(BarrierKind, [], view: barrier::Barrier<'static>, init: u32, elem: (),
    handle: Barrier,
    size: |&parties| Some(barrier::Barrier::memory_size(parties)),
    create: |r, parties, tag| barrier::Barrier::create_tagged(r, parties, tag),
    attach: barrier::Barrier::attach_tagged_timeout,
    debug: |v, d| d
        .field("parties", &v.parties())
        .field("n_waiting", &v.n_waiting())
        .field("broken", &v.is_broken()),
);

one_region!(ValueKind<T>, [T: Pod], view: value::Value<'static, T>, init: T, elem: T,
    handle: Value,
    size: |_| value::Value::<T>::memory_size(),
    create: |r, init, tag| value::Value::create_tagged(r, init, tag),
    attach: value::Value::attach_tagged_timeout,
    debug: |v, d| d.field("core", v),
);

one_region!(AtomicValueKind<T>, [T: Pod], view: value::AtomicValue<'static, T>, init: T, elem: T,
    handle: AtomicValue,
    size: |_| value::AtomicValue::<T>::memory_size(),
    create: |r, init, tag| value::AtomicValue::create_tagged(r, init, tag),
    attach: value::AtomicValue::attach_tagged_timeout,
    debug: |v, d| d.field("bytes", &bytemuck::bytes_of(&v.load())),
);

one_region!(ArrayKind<T>, [T: Pod], view: value::Array<'static, T>, init: (usize, T), elem: T,
    handle: Array,
    size: |&(len, _)| value::Array::<T>::memory_size(len),
    create: |r, (len, fill), tag| value::Array::create_tagged(r, len, fill, tag),
    attach: value::Array::attach_tagged_timeout,
    debug: |v, d| d.field("len", &v.len()),
);
