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

    // TODO(lead): attach the other structures to the same region here once
    // they exist, each as a plain call whose result is ignored, e.g.
    //   let _ = multiproc_core::spsc::SpscRing::<u64>::attach(region);
    //   let _ = multiproc_core::mpmc::MpmcRing::<u64>::attach(region);
    //   let _ = multiproc_core::mutex::Mutex::<u64>::attach(region);
});
