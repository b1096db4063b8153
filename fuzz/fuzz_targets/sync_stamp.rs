//! The type stamp check of the std crate's sync handles (`Lock`, `Mutex`,
//! `RLock`, `Condition`, `Semaphore`, `BoundedSemaphore`, `Event`,
//! `Barrier`, `Value`, `AtomicValue`, `Array`): what `open`/`attach` do to
//! a segment's first region before anything else.
//!
//! The input picks a region (a handle's structure built in it, or raw input
//! bytes), patches it, and cuts it to a length; then every handle attaches
//! to it (without waiting). Checked:
//! - attaching never panics, never writes to the region, and never
//!   succeeds unless the header records exactly that handle's stamp;
//! - `WrongType { expected, found }` names the opener's stamp as expected,
//!   and as found what the header records, which differs from it; a found
//!   handle's core kind is the region's;
//! - every error and segment type displays;
//! - `HandleKind::from_tag` accepts a tag only with the handle's prefix and
//!   core kind.
#![no_main]

use std::alloc::{alloc_zeroed, dealloc, Layout};

use libfuzzer_sys::fuzz_target;
use multiproc::fuzzing::{sync_cases, sync_handle_from_tag, sync_handle_kinds, sync_segment_type};
use multiproc::sync::SyncError;
use multiproc_core::region::{Kind, Region};

const SIZE: usize = 2048;

/// A zeroed, 128-byte aligned allocation of `SIZE` bytes.
struct Aligned {
    ptr: *mut u8,
    layout: Layout,
}

impl Aligned {
    fn new() -> Self {
        let layout = Layout::from_size_align(SIZE, 128).unwrap();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Self { ptr, layout }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` holds `SIZE` initialised bytes, owned by `self`,
        // borrowed mutably here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, SIZE) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

fuzz_target!(|data: &[u8]| {
    let [pick, cut, t0, t1, t2, t3, t4, t5, t6, t7, k, rest @ ..] = data else {
        return;
    };
    let tag = u64::from_le_bytes([*t0, *t1, *t2, *t3, *t4, *t5, *t6, *t7]);
    let kinds = sync_handle_kinds();
    // The tag decoder alone.
    let kind = Kind::from_u32(u32::from(*k % 16));
    if let Some(h) = sync_handle_from_tag(tag, kind) {
        let (_, prefix, core) = kinds.iter().find(|(x, ..)| *x == h).unwrap();
        assert_eq!((tag >> 48, kind), (*prefix, Some(*core)));
    }

    let cases = sync_cases();
    let mut mem = Aligned::new();
    let bytes = mem.bytes();
    let mut patches = rest;
    if pick & 0x80 == 0 {
        // A handle's structure, then patches: (offset u16, len u8, bytes).
        let made = &cases[usize::from(*pick) % cases.len()];
        made.create(Region::from_mut_slice(bytes)).unwrap();
        while let [o0, o1, n, tail @ ..] = patches {
            let off = usize::from(u16::from_le_bytes([*o0, *o1])) % SIZE;
            let n = usize::from(*n).min(tail.len()).min(SIZE - off);
            bytes[off..off + n].copy_from_slice(&tail[..n]);
            patches = &tail[n..];
        }
    } else {
        // Raw bytes.
        let n = rest.len().min(SIZE);
        bytes[..n].copy_from_slice(&rest[..n]);
    }
    // Cut short (or whole): 0 to SIZE bytes, in steps of 8.
    let len = if *cut == 0 {
        SIZE
    } else {
        usize::from(*cut) * 8
    };
    let before = bytes[..len].to_vec();
    let region = Region::from_mut_slice(&mut bytes[..len]);

    let found = sync_segment_type(region);
    if let Some(f) = found {
        let _ = f.to_string();
        if let Some(h) = f.handle {
            let (.., core) = kinds.iter().find(|(x, ..)| *x == h).unwrap();
            assert_eq!(f.kind, Some(*core));
        }
    }
    for case in &cases {
        match case.attach(region) {
            Ok(()) => assert_eq!(found, Some(case.stamp), "{}", case.what),
            Err(SyncError::WrongType { expected, found: f }) => {
                assert_eq!(expected, case.stamp);
                assert_ne!(f, expected);
                assert_eq!(Some(f), found, "{}", case.what);
            }
            Err(e @ SyncError::Attach(_)) => {
                let _ = e.to_string();
            }
            Err(e) => panic!("{}: {e:?}", case.what),
        }
    }
    assert!(bytes[..len] == before[..], "an attach wrote to the region");
});
