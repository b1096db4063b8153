use super::*;
use ::loom::thread;

/// A region on leaked heap memory: loom threads need 'static.
fn leaked_region(bytes: usize) -> Region<'static> {
    Region::from_mut_slice(crate::test_util::leak(bytes))
}

/// fetch_add on the native (64-bit) path: no update is lost.
#[test]
fn fetch_add_native_from_two_threads() {
    ::loom::model(|| {
        let r = leaked_region(AtomicValue::<u64>::memory_size().unwrap());
        let v = AtomicValue::<u64>::create(r, 0).unwrap();
        let t = thread::spawn(move || {
            v.fetch_add(1);
            v.fetch_add(2);
        });
        v.fetch_add(10);
        t.join().unwrap();
        assert_eq!(v.load(), 13);
    });
}

/// fetch_add on the CAS-loop (narrow) path: no update is lost, and a
/// wrap does not leak into the upper bits.
#[test]
fn fetch_add_cas_from_two_threads() {
    ::loom::model(|| {
        let r = leaked_region(AtomicValue::<u8>::memory_size().unwrap());
        let v = AtomicValue::<u8>::create(r, 250).unwrap();
        let t = thread::spawn(move || {
            v.fetch_add(3);
        });
        v.fetch_add(4);
        t.join().unwrap();
        assert_eq!(v.load(), 1);
        assert_eq!(v.raw_bits(), 1);
    });
}
