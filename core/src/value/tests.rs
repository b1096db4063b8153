extern crate std;
use super::*;
use crate::mutex::PoisonCause;
use crate::test_util::DEAD_PID;
use crate::test_util::{buf, region};
use std::format;
use std::thread;

#[test]
fn value_get_set_update() {
    let mut b = buf(Value::<u64>::memory_size().unwrap());
    let v = Value::<u64>::create(region(&mut b), 3).unwrap();
    assert_eq!(v.get().unwrap(), 3);
    v.set(4).unwrap();
    assert_eq!(
        v.update(|x| {
            *x += 1;
            *x * 10
        })
        .unwrap(),
        50
    );
    assert_eq!(*v.lock().unwrap(), 5);
    assert_eq!(v.get_timeout(Duration::ZERO).unwrap(), 5);
    v.set_timeout(6, Duration::from_millis(1)).unwrap();
    assert_eq!(v.update_timeout(Duration::ZERO, |x| *x).unwrap(), 6);
    assert_eq!(*v.try_lock().unwrap(), 6);
    assert_eq!(*v.lock_timeout(Duration::ZERO).unwrap(), 6);
    assert!(!v.raw().is_locked());
    assert!(format!("{v:?}").starts_with("Value {"));
}

#[test]
fn value_timeouts_while_held() {
    let mut b = buf(Value::<u64>::memory_size().unwrap());
    let v = Value::<u64>::create(region(&mut b), 3).unwrap();
    let g = v.lock().unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(
                v.get_timeout(Duration::from_millis(5)),
                Err(LockTimeoutError::TimedOut)
            ));
            assert!(matches!(
                v.set_timeout(1, Duration::ZERO),
                Err(LockTimeoutError::TimedOut)
            ));
            assert!(matches!(v.try_lock(), Err(TryLockError::WouldBlock)));
        });
    });
    drop(g);
    assert_eq!(v.get().unwrap(), 3);
}

#[test]
fn value_reports_poison_after_doing_the_work() {
    let mut b = buf(Value::<i32>::memory_size().unwrap());
    let v = Value::<i32>::create(region(&mut b), 7).unwrap();
    v.raw().hold_as_dead(true);
    let e = v.get().unwrap_err();
    assert_eq!(e.cause(), PoisonCause::OwnerDied { pid: DEAD_PID });
    assert_eq!(e.into_inner(), 7);
    assert!(v.set(8).is_err());
    assert_eq!(v.get().unwrap_or_else(PoisonError::into_inner), 8);
    assert_eq!(v.update(|x| *x + 1).unwrap_err().into_inner(), 9);
    match v.get_timeout(Duration::ZERO) {
        Err(LockTimeoutError::Poisoned(p)) => assert_eq!(p.into_inner(), 8),
        other => panic!("{other:?}"),
    }
    assert!(v.is_poisoned());
    v.clear_poison();
    assert_eq!(v.get().unwrap(), 8);
}

#[test]
fn value_attach_checks_kind_and_type() {
    let mut b = buf(4096);
    let r = region(&mut b);
    assert_eq!(Value::<u64>::attach(r).unwrap_err(), AttachError::NotReady);
    assert_eq!(
        Value::<u64>::attach_timeout(r, Duration::from_millis(2)).unwrap_err(),
        AttachError::NotReady
    );
    let v = Value::<u64>::create(r, 1).unwrap();
    let w = Value::<u64>::attach_timeout(r, Duration::from_secs(1)).unwrap();
    w.set(2).unwrap();
    assert_eq!(v.get().unwrap(), 2);
    assert!(matches!(
        Value::<u16>::attach(r),
        Err(AttachError::TypeMismatch { .. })
    ));
    assert!(matches!(
        AtomicValue::<u64>::attach(r),
        Err(AttachError::KindMismatch { found: 9, .. })
    ));
}

fn atomic<T: Pod>(b: &mut [crate::test_util::Line], init: T) -> AtomicValue<'_, T> {
    AtomicValue::<T>::create(region(b), init).unwrap()
}

#[test]
fn atomic_value_operations() {
    let mut b = buf(4096);
    let a = atomic(&mut b, 5u64);
    assert_eq!(a.load(), 5);
    a.store(6);
    assert_eq!(a.swap(7), 6);
    assert_eq!(a.compare_exchange(7, 8), Ok(7));
    assert_eq!(a.compare_exchange(7, 9), Err(8));
    assert_eq!(a.fetch_update(|x| (x == 8).then_some(1)), Ok(8));
    assert_eq!(a.fetch_update(|x| (x == 8).then_some(1)), Err(1));
    assert_eq!(a.fetch_add(u64::MAX), 1);
    assert_eq!(a.load(), 0);
    assert_eq!(a.fetch_sub(1), 0);
    assert_eq!(a.load(), u64::MAX);
    assert_eq!(format!("{a:?}"), "AtomicValue { bits: 0xffffffffffffffff }");
}

#[test]
fn atomic_value_narrow_integers_wrap_without_leaking_carries() {
    let mut b = buf(4096);
    let a = atomic(&mut b, 255u8);
    assert_eq!(a.fetch_add(1), 255);
    assert_eq!(a.load(), 0);
    assert_eq!(a.raw_bits(), 0);
    assert_eq!(a.fetch_sub(1), 0);
    assert_eq!(a.load(), 255);
    let mut b = buf(4096);
    let a = atomic(&mut b, -1i8);
    assert_eq!(a.raw_bits(), 0xff);
    assert_eq!(a.fetch_add(1), -1);
    assert_eq!(a.load(), 0);
    assert_eq!(a.fetch_sub(i8::MIN), 0);
    assert_eq!(a.load(), i8::MIN);
    let mut b = buf(4096);
    let a = atomic(&mut b, i32::MAX);
    assert_eq!(a.fetch_add(1), i32::MAX);
    assert_eq!(a.load(), i32::MIN);
    assert_eq!(a.raw_bits(), 0x8000_0000);
    let mut b = buf(4096);
    let a = atomic(&mut b, 0u16);
    assert_eq!(a.fetch_sub(1), 0);
    assert_eq!(a.load(), u16::MAX);
    let mut b = buf(4096);
    let a = atomic(&mut b, i64::MIN);
    assert_eq!(a.fetch_sub(1), i64::MIN);
    assert_eq!(a.load(), i64::MAX);
    let mut b = buf(4096);
    let a = atomic(&mut b, 1i16);
    assert_eq!(a.fetch_add(-2), 1);
    assert_eq!(a.load(), -1);
    let mut b = buf(4096);
    let a = atomic(&mut b, 1u32);
    assert_eq!(a.fetch_add(2), 1);
    assert_eq!(a.load(), 3);
}

#[test]
fn atomic_value_floats_and_structs() {
    let mut b = buf(4096);
    let a = atomic(&mut b, 1.5f64);
    assert_eq!(a.swap(-0.0), 1.5);
    assert_eq!(a.compare_exchange(0.0, 1.0), Err(-0.0));
    assert_eq!(a.compare_exchange(-0.0, 1.0), Ok(-0.0));
    let mut b = buf(4096);
    let a = atomic(&mut b, 2.5f32);
    assert_eq!(a.load(), 2.5);
    let mut b = buf(4096);
    let a = atomic(&mut b, [1u8, 2]);
    assert_eq!(a.fetch_update(|[x, y]| Some([y, x])), Ok([1, 2]));
    assert_eq!(a.load(), [2, 1]);
    let mut b = buf(4096);
    let a = atomic(&mut b, [7u16; 4]);
    assert_eq!(a.load(), [7; 4]);
}

#[test]
fn atomic_value_ignores_garbage_above_the_value() {
    let mut b = buf(4096);
    let a = atomic(&mut b, 5u16);
    a.bits.store(0xdead_0000_0005, Ordering::Relaxed);
    assert_eq!(a.load(), 5);
    assert_eq!(a.compare_exchange(5, 6), Ok(5));
    assert_eq!(a.load(), 6);
    assert_eq!(a.raw_bits(), 6);
    a.bits.store(0xdead_0000_0009, Ordering::Relaxed);
    assert_eq!(a.compare_exchange(5, 6), Err(9));
    assert_eq!(a.fetch_add(1), 9);
    assert_eq!(a.load(), 10);
}

#[test]
fn atomic_value_rejects_unsupported_sizes() {
    let mut b = buf(4096);
    assert_eq!(AtomicValue::<[u8; 3]>::memory_size(), None);
    assert_eq!(AtomicValue::<[u8; 16]>::memory_size(), None);
    assert_eq!(AtomicValue::<()>::memory_size(), None);
    assert_eq!(AtomicValue::<u64>::memory_size(), Some(256));
    assert_eq!(
        AtomicValue::<[u8; 3]>::create(region(&mut b), [0; 3]).unwrap_err(),
        InitError::UnsupportedType
    );
    assert_eq!(
        AtomicValue::<u128>::create(region(&mut b), 0).unwrap_err(),
        InitError::UnsupportedType
    );
    // Nothing was written: the region is still free.
    AtomicValue::<u32>::create(region(&mut b), 0).unwrap();
    assert!(matches!(
        AtomicValue::<[u8; 3]>::attach(region(&mut b)),
        Err(AttachError::TypeMismatch { .. })
    ));
}

#[test]
fn atomic_value_attach_checks_kind_and_type() {
    let mut b = buf(4096);
    let r = region(&mut b);
    assert_eq!(
        AtomicValue::<u32>::attach_timeout(r, Duration::from_millis(2)).unwrap_err(),
        AttachError::NotReady
    );
    let a = AtomicValue::<u32>::create(r, 4).unwrap();
    let c = AtomicValue::<u32>::attach(r).unwrap();
    c.fetch_add(1);
    assert_eq!(a.load(), 5);
    assert!(AtomicValue::<u32>::attach_timeout(r, Duration::ZERO).is_ok());
    assert!(matches!(
        AtomicValue::<u64>::attach(r),
        Err(AttachError::TypeMismatch { .. })
    ));
    assert!(matches!(
        Value::<u32>::attach(r),
        Err(AttachError::KindMismatch { found: 11, .. })
    ));
}

#[test]
fn atomic_value_counts_exactly_from_four_threads() {
    let mut b = buf(4096);
    let a = atomic(&mut b, 0u32);
    let mut c = buf(4096);
    let w = atomic(&mut c, 0i64);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    a.fetch_add(1);
                    w.fetch_sub(3);
                }
            });
        }
    });
    assert_eq!(a.load(), 40_000);
    assert_eq!(w.load(), -120_000);
}

#[test]
fn array_operations_and_errors() {
    let mut b = buf(Array::<u32>::memory_size(5).unwrap());
    let a = Array::<u32>::create(region(&mut b), 5, 1).unwrap();
    assert_eq!(a.len(), 5);
    assert!(!a.is_empty());
    assert_eq!(a.get(4).unwrap(), 1);
    a.set(4, 9).unwrap();
    assert_eq!(a.get(4).unwrap(), 9);
    assert!(matches!(
        a.get(5),
        Err(ArrayError::OutOfBounds { index: 5, len: 5 })
    ));
    assert!(matches!(
        a.set(usize::MAX, 0),
        Err(ArrayError::OutOfBounds {
            index: usize::MAX,
            len: 5
        })
    ));
    let mut out = [0; 5];
    a.copy_to_slice(&mut out).unwrap();
    assert_eq!(out, [1, 1, 1, 1, 9]);
    a.copy_from_slice(&[5, 4, 3, 2, 1]).unwrap();
    assert_eq!(&*a.lock().unwrap(), &[5, 4, 3, 2, 1]);
    assert!(matches!(
        a.copy_to_slice(&mut [0; 4]),
        Err(ArrayError::LengthMismatch { array: 5, slice: 4 })
    ));
    assert!(matches!(
        a.copy_from_slice(&[0; 6]),
        Err(ArrayError::LengthMismatch { array: 5, slice: 6 })
    ));
    {
        let mut g = a.lock().unwrap();
        g.sort_unstable();
        assert!(matches!(a.try_lock(), Err(TryLockError::WouldBlock)));
        assert_eq!(format!("{g:?}"), "[1, 2, 3, 4, 5]");
    }
    assert_eq!(a.try_lock().unwrap()[0], 1);
    assert_eq!(a.lock_timeout(Duration::ZERO).unwrap()[4], 5);
    assert!(format!("{a:?}").starts_with("Array { len: 5,"));
}

#[test]
fn array_of_length_zero_and_one() {
    let mut b = buf(Array::<u64>::memory_size(0).unwrap());
    let a = Array::<u64>::create(region(&mut b), 0, 0).unwrap();
    assert!(a.is_empty());
    assert!(a.lock().unwrap().is_empty());
    assert!(matches!(
        a.get(0),
        Err(ArrayError::OutOfBounds { index: 0, len: 0 })
    ));
    a.copy_from_slice(&[]).unwrap();
    let b2 = Array::<u64>::attach(region(&mut b)).unwrap();
    assert_eq!(b2.len(), 0);

    let mut b = buf(Array::<[u8; 3]>::memory_size(1).unwrap());
    let a = Array::<[u8; 3]>::create(region(&mut b), 1, [1, 2, 3]).unwrap();
    assert_eq!(a.get(0).unwrap(), [1, 2, 3]);
}

#[test]
fn array_large_and_overflowing_lengths() {
    assert_eq!(Array::<u64>::memory_size(usize::MAX), None);
    let mut b = buf(4096);
    assert!(matches!(
        Array::<u64>::create(region(&mut b), usize::MAX / 4, 0),
        Err(InitError::CapacityOverflow { .. })
    ));
    assert!(matches!(
        Array::<u64>::create(region(&mut b), 10_000, 0),
        Err(InitError::TooSmall { .. })
    ));
    let n = 100_000;
    let mut b = buf(Array::<u16>::memory_size(n).unwrap());
    let a = Array::<u16>::create(region(&mut b), n, 0).unwrap();
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..10 {
                    for x in a.lock().unwrap().iter_mut() {
                        *x += 1;
                    }
                }
            });
        }
    });
    assert!(a.lock().unwrap().iter().all(|&x| x == 20));
}

#[test]
fn array_reports_poison_after_doing_the_work() {
    let mut b = buf(Array::<u8>::memory_size(3).unwrap());
    let a = Array::<u8>::create(region(&mut b), 3, 0).unwrap();
    {
        let g = a.lock().unwrap();
        g.poison();
    }
    match a.set(1, 5) {
        Err(ArrayError::Poisoned(p)) => assert_eq!(p.cause(), PoisonCause::Panicked),
        other => panic!("{other:?}"),
    }
    match a.get(1) {
        Err(ArrayError::Poisoned(p)) => assert_eq!(p.into_inner(), 5),
        other => panic!("{other:?}"),
    }
    let mut out = [9; 3];
    assert!(a.copy_to_slice(&mut out).is_err());
    assert_eq!(out, [0, 5, 0]);
    assert!(a.copy_from_slice(&[1, 2, 3]).is_err());
    assert!(matches!(a.try_lock(), Err(TryLockError::Poisoned(_))));
    assert_eq!(a.lock().unwrap_err().into_inner()[2], 3);
    assert!(a.is_poisoned());
    a.clear_poison();
    assert_eq!(a.get(2).unwrap(), 3);
    assert!(a.lock_timeout(Duration::ZERO).is_ok());
}

#[test]
fn array_attach_checks_kind_type_and_length() {
    let mut b = buf(4096);
    let r = region(&mut b);
    assert_eq!(
        Array::<u32>::attach_timeout(r, Duration::from_millis(2)).unwrap_err(),
        AttachError::NotReady
    );
    let a = Array::<u32>::create(r, 10, 3).unwrap();
    let c = Array::<u32>::attach_timeout(r, Duration::from_secs(1)).unwrap();
    c.set(9, 4).unwrap();
    assert_eq!(a.get(9).unwrap(), 4);
    assert_eq!(c.len(), 10);
    assert!(matches!(
        Array::<u64>::attach(r),
        Err(AttachError::TypeMismatch { .. })
    ));
    assert!(matches!(
        Value::<u32>::attach(r),
        Err(AttachError::KindMismatch { found: 10, .. })
    ));
    // A forged length (capacity at header offset 40) is refused, whatever
    // the total size says.
    // SAFETY: test-only write to the header of memory this test owns,
    // while no other thread uses it.
    unsafe { r.as_ptr().add(40).cast::<u64>().write(1_000_000) };
    assert!(matches!(
        Array::<u32>::attach(r),
        Err(AttachError::CorruptCapacity {
            capacity: 1_000_000
        })
    ));
}

#[test]
fn tagged_attach_needs_the_same_tag() {
    let z = Duration::ZERO;
    let mut b = buf(4096);
    let r = region(&mut b);
    let v = Value::<u32>::create_tagged(r, 1, 5).unwrap();
    Value::<u32>::attach_tagged_timeout(r, 5, z)
        .unwrap()
        .set(2)
        .unwrap();
    assert_eq!(v.get().unwrap(), 2);
    assert!(matches!(
        Value::<u32>::attach_tagged_timeout(r, 6, z),
        Err(AttachError::TypeMismatch { .. })
    ));
    assert!(matches!(
        Value::<u32>::attach(r),
        Err(AttachError::TypeMismatch { .. })
    ));

    let mut b = buf(4096);
    let r = region(&mut b);
    let a = AtomicValue::<u16>::create_tagged(r, 1, 5).unwrap();
    AtomicValue::<u16>::attach_tagged_timeout(r, 5, z)
        .unwrap()
        .store(3);
    assert_eq!(a.load(), 3);
    assert!(matches!(
        AtomicValue::<u16>::attach_tagged_timeout(r, 6, z),
        Err(AttachError::TypeMismatch { .. })
    ));
    assert!(matches!(
        AtomicValue::<[u8; 3]>::create_tagged(r, [0; 3], 5),
        Err(InitError::UnsupportedType)
    ));

    let mut b = buf(4096);
    let r = region(&mut b);
    let a = Array::<u8>::create_tagged(r, 3, 1, 5).unwrap();
    Array::<u8>::attach_tagged_timeout(r, 5, z)
        .unwrap()
        .set(2, 4)
        .unwrap();
    assert_eq!(a.get(2).unwrap(), 4);
    assert!(matches!(
        Array::<u8>::attach_tagged_timeout(r, 6, z),
        Err(AttachError::TypeMismatch { .. })
    ));
    assert!(matches!(
        Array::<u8>::attach(r),
        Err(AttachError::TypeMismatch { .. })
    ));
}

#[test]
fn array_errors_debug_and_display() {
    let e: ArrayError<u8> = ArrayError::OutOfBounds { index: 3, len: 2 };
    assert_eq!(format!("{e:?}"), "OutOfBounds { index: 3, len: 2 }");
    assert_eq!(
        format!("{e}"),
        "index 3 out of bounds for array of length 2"
    );
    let e: ArrayError<u8> = ArrayError::LengthMismatch { array: 2, slice: 1 };
    assert_eq!(format!("{e:?}"), "LengthMismatch { array: 2, slice: 1 }");
    assert_eq!(
        format!("{e}"),
        "slice of length 1 does not match array of length 2"
    );
    let e: ArrayError<u8> = PoisonError::new(1, PoisonCause::Panicked).into();
    assert_eq!(
        format!("{e:?}"),
        "Poisoned(PoisonError { cause: Panicked, .. })"
    );
    assert!(format!("{e}").starts_with("poisoned lock"));
}
