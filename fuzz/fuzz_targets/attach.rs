//! Attaching to arbitrary memory never panics or reads out of bounds.
//!
//! The input (at most 64 KiB) is the whole region, in an allocation of
//! exactly its length, so AddressSanitizer sees any read past its end.
//! Whatever the bytes, `Region::header` and every structure's `attach` must
//! return a value or a typed error.
#![no_main]

use std::alloc::{alloc_zeroed, dealloc, Layout};

use libfuzzer_sys::fuzz_target;
use multiproc_core::bytering::ByteRing;
use multiproc_core::region::{AttachError, Region};

/// A zeroed, 128-byte aligned allocation of exactly `len` bytes.
struct Aligned {
    ptr: *mut u8,
    layout: Layout,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len.max(1), 128).unwrap();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Self { ptr, layout }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` holds `layout.size()` zero-initialised bytes, owned
        // by `self`, borrowed mutably here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(64 << 10)];
    let mut mem = Aligned::new(data.len());
    let bytes = mem.bytes();
    bytes[..data.len()].copy_from_slice(data);
    // An input whose length is not a multiple of 8 also tries a region that
    // starts 8 bytes in: misaligned.
    let start = if data.len() % 8 != 0 && data.len() > 8 {
        8
    } else {
        0
    };
    let region = Region::from_mut_slice(&mut bytes[start..]);

    match region.header() {
        Ok(h) => {
            let _ = (
                h.kind(),
                h.capacity(),
                h.elem_type(),
                h.total_size(),
                h.is_ready(),
            );
        }
        Err(AttachError::Misaligned { .. } | AttachError::TooSmall { .. }) => {}
        Err(e) => panic!("header() can only fail on size or alignment, got {e:?}"),
    }

    if let Ok(ring) = ByteRing::attach(region) {
        // Whatever attach accepts is self-consistent.
        let cap = ring.capacity();
        let size = ByteRing::memory_size(cap).expect("attach accepted an invalid capacity");
        assert!(size <= region.len());
        assert!(ring.max_frame() <= ByteRing::max_frame_for(cap).unwrap());
        // And reading whatever frames the bytes describe stays in bounds
        // (bytering_read explores this in depth).
        if let Ok(mut rx) = ring.receiver() {
            let mut buf = vec![0u8; ring.max_frame() as usize];
            let mut frames = 0u64;
            while rx.try_recv_into(&mut buf).is_ok() {
                frames += 1;
                assert!(frames <= cap / 8, "more frames than the ring holds");
            }
        }
    }

    attach_every_other_kind(region);
});

/// Every other structure's `attach` on the same bytes: a typed error or a
/// structure whose non-blocking operations stay in bounds and never panic.
fn attach_every_other_kind(region: Region<'_>) {
    use multiproc_core::barrier::Barrier;
    use multiproc_core::condvar::Condvar;
    use multiproc_core::event::Event;
    use multiproc_core::mpmc::MpmcRing;
    use multiproc_core::mutex::Mutex;
    use multiproc_core::semaphore::Semaphore;
    use multiproc_core::spsc::SpscRing;
    use multiproc_core::value::{Array, AtomicValue, Value};

    if let Ok(ring) = SpscRing::<u64>::attach(region) {
        let cap = ring.capacity();
        assert!(SpscRing::<u64>::memory_size(cap).unwrap() <= region.len());
        let _ = (ring.len(), ring.is_empty(), ring.is_full());
        if let Ok(mut rx) = ring.consumer() {
            let mut n = 0u64;
            while rx.try_pop().is_ok() {
                n += 1;
                assert!(n <= cap, "popped more than the capacity");
            }
            let mut out = [0u64; 4];
            let _ = rx.pop_slice(&mut out);
        }
        if let Ok(mut tx) = ring.producer() {
            let _ = tx.try_push(7);
            let _ = tx.push_slice(&[1, 2, 3]);
        }
    }
    if let Ok(ring) = MpmcRing::<u64>::attach(region) {
        let cap = ring.capacity();
        assert!(MpmcRing::<u64>::memory_size(cap).unwrap() <= region.len());
        let _ = (
            ring.len(),
            ring.is_empty(),
            ring.is_full(),
            ring.is_closed(),
        );
        let mut n = 0u64;
        while ring.try_pop().is_ok() {
            n += 1;
            assert!(n <= cap, "popped more than the capacity");
        }
        let _ = ring.try_push(9);
        let _ = ring.try_pop_with(|v| *v);
    }
    if let Ok(m) = Mutex::<u64>::attach(region) {
        let _ = m.is_poisoned();
        if let Ok(mut g) = m.try_lock() {
            *g = g.wrapping_add(1);
        }
    }
    if let Ok(c) = Condvar::attach(region) {
        c.notify_all();
    }
    if let Ok(s) = Semaphore::attach(region) {
        if s.try_acquire() {
            let _ = s.release();
        }
        let _ = s.value();
    }
    if let Ok(e) = Event::attach(region) {
        let _ = e.is_set();
        e.set();
        e.clear();
    }
    if let Ok(b) = Barrier::attach(region) {
        let _ = (b.parties(), b.n_waiting(), b.is_broken());
    }
    if let Ok(v) = Value::<u64>::attach(region) {
        if let Ok(mut g) = v.try_lock() {
            *g = g.wrapping_add(1);
        }
    }
    if let Ok(v) = AtomicValue::<u32>::attach(region) {
        let _ = v.fetch_add(1);
    }
    // Only non-blocking calls: a garbage lock word may name a live pid.
    if let Ok(a) = Array::<u16>::attach(region) {
        let len = a.len();
        if let Ok(mut g) = a.try_lock() {
            assert_eq!(g.len() as u64, len as u64);
            if let Some(x) = g.last_mut() {
                *x = x.wrapping_add(1);
            }
        }
    }
}
