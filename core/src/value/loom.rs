use super::*;
use ::loom::thread;
use std::boxed::Box;
use std::vec;

#[repr(C, align(128))]
#[derive(Clone, Copy)]
struct Line([u8; 128]);

/// A region on leaked heap memory: loom threads need 'static.
fn leaked_region(bytes: usize) -> Region<'static> {
    let lines: &'static mut [Line] =
        Box::leak(vec![Line([0; 128]); bytes.div_ceil(128)].into_boxed_slice());
    // SAFETY: Line is 128 plain bytes with no padding.
    let mem = unsafe {
        core::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u8>(), lines.len() * 128)
    };
    Region::from_mut_slice(mem)
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
