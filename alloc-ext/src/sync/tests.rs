//! Type stamps: every handle's segment, opened by name as every other
//! handle (and element type), is refused with [`SyncError::WrongType`]
//! naming both; foreign, zero-filled, garbage and truncated segments give
//! typed errors. All in one process: named segments need no fork.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};

use multiproc_core::mutex as core_mutex;
use multiproc_core::semaphore as core_semaphore;
use multiproc_core::value as core_value;

use super::*;

/// A handle of one type: how to make it and how to open it by name.
struct Case {
    /// For failure messages.
    what: &'static str,
    /// What its segment's first region must record.
    stamp: SegmentType,
    /// Makes it under a name; the box keeps the segment alive.
    make: fn(&str) -> Result<Box<dyn Any>, SyncError>,
    /// Opens it by name (and drops the handle).
    open: fn(&str) -> Result<(), SyncError>,
}

/// `case!(what, handle, core element type, make, open)`: `make` and `open`
/// are expressions of a name `$n`.
macro_rules! case {
    ($what:literal, $h:ident, $e:ty, |$n:ident| $make:expr, $open:expr) => {
        Case {
            what: $what,
            stamp: HandleKind::$h.stamp::<$e>(),
            make: |$n| Ok(Box::new($make?) as Box<dyn Any>),
            open: |$n| $open($n).map(drop),
        }
    };
}

/// One case per handle type, and more for the generic ones over element
/// types of the same size (and of another size).
fn cases() -> Vec<Case> {
    vec![
        case!("Lock", Lock, (), |n| Lock::named(n), Lock::open),
        case!("RLock", RLock, (), |n| RLock::named(n), RLock::open),
        case!(
            "Condition<()>",
            Condition,
            (),
            |n| Condition::named(n, ()),
            Condition::<()>::open
        ),
        case!(
            "Condition<u32>",
            Condition,
            u32,
            |n| Condition::named(n, 0u32),
            Condition::<u32>::open
        ),
        case!(
            "Mutex<()>",
            Mutex,
            (),
            |n| Mutex::named(n, ()),
            Mutex::<()>::open
        ),
        case!(
            "Mutex<u32>",
            Mutex,
            u32,
            |n| Mutex::named(n, 0u32),
            Mutex::<u32>::open
        ),
        case!(
            "Mutex<i32>",
            Mutex,
            i32,
            |n| Mutex::named(n, 0i32),
            Mutex::<i32>::open
        ),
        case!(
            "Mutex<f32>",
            Mutex,
            f32,
            |n| Mutex::named(n, 0f32),
            Mutex::<f32>::open
        ),
        case!(
            "Semaphore",
            Semaphore,
            (),
            |n| Semaphore::named(n, 1),
            Semaphore::open
        ),
        case!(
            "BoundedSemaphore",
            BoundedSemaphore,
            (),
            |n| BoundedSemaphore::named(n, 1),
            BoundedSemaphore::open
        ),
        case!("Event", Event, (), |n| Event::named(n), Event::open),
        case!(
            "Barrier",
            Barrier,
            (),
            |n| Barrier::named(n, 2),
            Barrier::open
        ),
        case!(
            "Value<u32>",
            Value,
            u32,
            |n| Value::named(n, 0u32),
            Value::<u32>::open
        ),
        case!(
            "Value<i32>",
            Value,
            i32,
            |n| Value::named(n, 0i32),
            Value::<i32>::open
        ),
        case!(
            "Value<u64>",
            Value,
            u64,
            |n| Value::named(n, 0u64),
            Value::<u64>::open
        ),
        case!(
            "AtomicValue<u32>",
            AtomicValue,
            u32,
            |n| AtomicValue::named(n, 0u32),
            AtomicValue::<u32>::open
        ),
        case!(
            "AtomicValue<i32>",
            AtomicValue,
            i32,
            |n| AtomicValue::named(n, 0i32),
            AtomicValue::<i32>::open
        ),
        case!(
            "AtomicValue<u64>",
            AtomicValue,
            u64,
            |n| AtomicValue::named(n, 0u64),
            AtomicValue::<u64>::open
        ),
        case!(
            "Array<u32>",
            Array,
            u32,
            |n| Array::named(n, 3, 0u32),
            Array::<u32>::open
        ),
        case!(
            "Array<i32>",
            Array,
            i32,
            |n| Array::named(n, 3, 0i32),
            Array::<i32>::open
        ),
        case!(
            "Array<u64>",
            Array,
            u64,
            |n| Array::named(n, 3, 0u64),
            Array::<u64>::open
        ),
    ]
}

fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "/mp-syncunit-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What the segment `name` holds, read the way `attach` reads it.
fn found_in(name: &str) -> SegmentType {
    let shm = SharedMemory::open(name).unwrap();
    // SAFETY: the region is used only while `shm` lives, here.
    SegmentType::read(unsafe { sub_region(&shm, 0) }.unwrap()).unwrap()
}

#[test]
fn every_handle_opened_as_every_other_is_refused_with_both_types() {
    let cases = cases();
    let names: Vec<String> = (0..cases.len()).map(|_| unique("matrix")).collect();
    let _kept: Vec<Box<dyn Any>> = cases
        .iter()
        .zip(&names)
        .map(|(c, n)| (c.make)(n).unwrap_or_else(|e| panic!("make {}: {e}", c.what)))
        .collect();
    for (made, name) in cases.iter().zip(&names) {
        // The stamp is what the header records.
        assert_eq!(found_in(name), made.stamp, "{}", made.what);
        for opener in &cases {
            let r = (opener.open)(name);
            if std::ptr::eq(made, opener) {
                assert!(r.is_ok(), "{} as itself: {r:?}", made.what);
                continue;
            }
            match r {
                Err(SyncError::WrongType { expected, found }) => {
                    assert_eq!(expected, opener.stamp, "{} as {}", made.what, opener.what);
                    assert_eq!(found, made.stamp, "{} as {}", made.what, opener.what);
                }
                other => panic!("{} as {}: {other:?}", made.what, opener.what),
            }
        }
    }
}

#[test]
fn stamps_tell_every_case_apart() {
    let cases = cases();
    for (i, a) in cases.iter().enumerate() {
        assert_eq!(a.stamp.elem.tag >> 56, STAMP_PREFIX);
        for b in &cases[i + 1..] {
            assert_ne!(a.stamp, b.stamp, "{} and {}", a.what, b.what);
        }
    }
}

#[test]
fn wrong_type_names_what_was_expected_and_found() {
    let n = unique("display");
    let _r = RLock::named(&n).unwrap();
    let e = Lock::open(&n).unwrap_err();
    assert_eq!(e.to_string(), "the segment holds an RLock, not a Lock");
    assert!(std::error::Error::source(&e).is_none());
    let n = unique("display");
    let _v = Value::named(&n, 0u64).unwrap();
    let e = Value::<u32>::open(&n).unwrap_err();
    let SyncError::WrongType { expected, found } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(
        (expected.handle, found.handle),
        (Some(HandleKind::Value), Some(HandleKind::Value))
    );
    assert_eq!((expected.elem.size, found.elem.size), (4, 8));
    let s = e.to_string();
    assert!(
        s.starts_with("the segment holds a Value<T> of a 8-byte T aligned to 8 (type hash ")
            && s.contains(", not a Value<T> of a 4-byte T aligned to 4 (type hash "),
        "{s}"
    );
    let n = unique("display");
    let _b = BoundedSemaphore::named(&n, 1).unwrap();
    assert_eq!(
        Semaphore::open(&n).unwrap_err().to_string(),
        "the segment holds a BoundedSemaphore, not a Semaphore"
    );
    assert_eq!(HandleKind::AtomicValue.to_string(), "AtomicValue");
    let n = unique("display");
    let _a = Array::named(&n, 1, 0u8).unwrap();
    let e = Event::open(&n).unwrap_err().to_string();
    assert!(
        e.starts_with("the segment holds an Array<T> of a 1-byte T aligned to 1 (type hash ")
            && e.ends_with("), not an Event"),
        "{e}"
    );
}

/// Opens `name` with every case's opener on its own thread (so that the
/// waits for a creator run at once) and returns what each gave.
fn open_with_all(name: &str) -> Vec<(&'static str, SyncError)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = cases()
            .into_iter()
            .map(|c| s.spawn(move || (c.what, (c.open)(name))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (what, r) = h.join().unwrap();
                (what, r.expect_err(what))
            })
            .collect()
    })
}

#[test]
fn a_queue_segment_is_no_handle_of_this_module() {
    let n = unique("queue");
    let (_tx, _rx) = crate::Queue::<u64>::new(4).named(&n).channel().unwrap();
    for (what, e) in open_with_all(&n) {
        match e {
            SyncError::WrongType { expected, found } => {
                assert_eq!(
                    (found.handle, found.kind),
                    (None, Some(Kind::Peers)),
                    "{what}"
                );
                assert!(expected.handle.is_some(), "{what}");
                assert!(
                    found
                        .to_string()
                        .contains("core Peers that no sync handle made"),
                    "{found}"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn an_untagged_core_structure_is_no_handle_of_this_module() {
    let n = unique("core");
    let shm = SharedMemory::create(&n, Semaphore::memory_size()).unwrap();
    let _s = Owned::create(shm, |r| core_semaphore::Semaphore::create(r, 1)).unwrap();
    match Semaphore::open(&n).unwrap_err() {
        SyncError::WrongType { expected, found } => {
            assert_eq!(expected.handle, Some(HandleKind::Semaphore));
            assert_eq!(found.handle, None);
            assert_eq!(found.kind, Some(Kind::Semaphore));
            assert_eq!(found.elem.tag, 0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_zero_filled_segment_is_not_ready() {
    let n = unique("zero");
    let _shm = SharedMemory::create(&n, 4096).unwrap();
    for (what, e) in open_with_all(&n) {
        assert!(
            matches!(e, SyncError::Attach(AttachError::NotReady)),
            "{what}: {e:?}"
        );
    }
}

#[test]
fn a_garbage_segment_is_corrupt() {
    let n = unique("garbage");
    let shm = SharedMemory::create(&n, 4096).unwrap();
    // SAFETY: 4096 bytes of a mapping no structure uses in this process.
    unsafe { shm.as_ptr().write_bytes(0xff, shm.len()) };
    for (what, e) in open_with_all(&n) {
        assert!(
            matches!(e, SyncError::Attach(AttachError::CorruptState { .. })),
            "{what}: {e:?}"
        );
    }
}

#[test]
fn a_segment_smaller_than_a_header_is_too_small() {
    let n = unique("tiny");
    let _shm = SharedMemory::create(&n, 64).unwrap();
    for (what, e) in open_with_all(&n) {
        assert!(
            matches!(
                e,
                SyncError::Attach(AttachError::TooSmall {
                    needed: 128,
                    available: 64
                })
            ),
            "{what}: {e:?}"
        );
    }
}

#[test]
fn composite_segments_cut_after_their_first_region_are_too_small() {
    // The lock region of an RLock, stamped as an RLock's, and nothing after.
    let n = unique("cut-rlock");
    let size = core_mutex::Mutex::<()>::memory_size().unwrap();
    let shm = SharedMemory::create(&n, size).unwrap();
    let _m = Owned::create(shm, |r| {
        core_mutex::Mutex::create_tagged(r, (), HandleKind::RLock.tag::<()>())
    })
    .unwrap();
    assert!(matches!(
        RLock::open(&n),
        Err(SyncError::Attach(AttachError::TooSmall { .. }))
    ));
    assert!(matches!(Lock::open(&n), Err(SyncError::WrongType { .. })));

    let n = unique("cut-condition");
    let size = core_mutex::Mutex::<u32>::memory_size().unwrap();
    let shm = SharedMemory::create(&n, size).unwrap();
    let _m = Owned::create(shm, |r| {
        core_mutex::Mutex::create_tagged(r, 0u32, HandleKind::Condition.tag::<u32>())
    })
    .unwrap();
    assert!(matches!(
        Condition::<u32>::open(&n),
        Err(SyncError::Attach(AttachError::TooSmall { .. }))
    ));
}

#[test]
fn an_array_cut_short_is_too_small() {
    // A published Array<u32> of 4096 elements, of which the segment holds
    // the first page only.
    let whole = Array::new(4096, 7u32).unwrap();
    let n = unique("cut-array");
    let cut = SharedMemory::create(&n, 4096).unwrap();
    // SAFETY: both mappings are at least 4096 bytes; the copy is of plain
    // bytes (the array is unlocked and nobody writes it), into a mapping no
    // structure uses yet.
    unsafe { std::ptr::copy_nonoverlapping(whole.shm().as_ptr(), cut.as_ptr(), 4096) };
    assert!(matches!(
        Array::<u32>::open(&n),
        Err(SyncError::Attach(AttachError::TooSmall { .. }))
    ));
    assert!(matches!(
        Array::<i32>::open(&n),
        Err(SyncError::WrongType { .. })
    ));
    // A core Array untagged is another structure.
    let n = unique("core-array");
    let size = core_value::Array::<u32>::memory_size(2).unwrap();
    let shm = SharedMemory::create(&n, size).unwrap();
    let _a = Owned::create(shm, |r| core_value::Array::create(r, 2, 0u32)).unwrap();
    assert!(matches!(
        Array::<u32>::open(&n),
        Err(SyncError::WrongType {
            found: SegmentType { handle: None, .. },
            ..
        })
    ));
}

#[test]
fn semaphore_holder_table_sizes() {
    let s = super::Semaphore::with_holders(1, 2).unwrap();
    s.acquire().unwrap();
    assert_eq!(s.held_by_me(), 1);
    s.release().unwrap();
    assert_eq!(s.recover(), 0);
    let b = super::BoundedSemaphore::with_holders(1, 1).unwrap();
    assert!(b.try_acquire());
    b.release().unwrap();
    assert!(b.release().is_err());
    assert!(matches!(
        super::Semaphore::with_holders(1, 0),
        Err(super::SyncError::Init(_))
    ));
}

#[test]
fn every_guard_clears_the_poison_it_holds() {
    let m = Mutex::new(1u32).unwrap();
    m.lock().unwrap().poison();
    let g = m.lock().unwrap_err().into_inner();
    g.clear_poison();
    drop(g);
    assert!(!m.is_poisoned() && m.lock().is_ok());

    let r = RLock::new().unwrap();
    r.lock().unwrap().poison();
    let g = r.lock().unwrap_err().into_inner();
    assert!(r.is_poisoned());
    g.clear_poison();
    drop(g);
    assert!(!r.is_poisoned() && r.lock().is_ok());

    let a = Array::new(2, 0u8).unwrap();
    a.lock().unwrap().poison();
    a.lock().unwrap_err().into_inner().clear_poison();
    assert!(!a.is_poisoned());
}
