//! Reading a ring whose shared state was scribbled on never panics and never
//! touches memory outside the region.
//!
//! The input builds a valid ring (capacity 64 to 512, a `max_frame`, a few
//! frames), then overwrites the body and data (everything after the
//! 128-byte region header: all of it, or patches chosen by the input), then
//! drives the sender and receiver with non-blocking calls and finally drains
//! the receiver until it reports an error. The region is an allocation of
//! exactly its size, so AddressSanitizer catches any access past its end.
//! Also checked: lengths never exceed `max_frame`, corruption is sticky, and
//! the drain ends.
#![no_main]

use std::alloc::{alloc_zeroed, dealloc, Layout};

use libfuzzer_sys::fuzz_target;
use multiproc_core::bytering::{ByteRing, RecvError};
use multiproc_core::region::Region;

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
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

/// The input, read a byte at a time (zeros once exhausted).
struct Input<'d>(&'d [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

/// Overwrites `len` bytes of the region at `off` behind the ring's back,
/// as a hostile process would.
fn scribble(base: *mut u8, size: usize, off: usize, src: &[u8]) {
    let n = src.len().min(size.saturating_sub(off));
    // SAFETY: `off + n <= size`, the allocation's length; the bytes are
    // only accessed by this thread (single-threaded target).
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), base.add(off), n) };
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let cap = 64u64 << (inp.byte() % 4);
    let max = u64::from(inp.byte()) % (ByteRing::max_frame_for(cap).unwrap() + 1);
    let size = ByteRing::memory_size(cap).unwrap();
    let mem = Aligned::new(size);
    // SAFETY: `mem` holds `size` zeroed bytes and outlives the region; the
    // memory is reached only through the ring and `scribble` below.
    let bytes = unsafe { std::slice::from_raw_parts_mut(mem.ptr, size) };
    let region = Region::from_mut_slice(bytes);
    let base = region.as_ptr();
    let ring = ByteRing::create(region, cap, max).unwrap();
    let (mut tx, mut rx) = ring.split().unwrap();

    // Valid traffic first, so the scribbles land on real frames.
    for i in 0..inp.byte() % 16 {
        let len = u64::from(inp.byte()) % (max + 1);
        let _ = tx.try_send(&payload(len as usize, i));
        if inp.byte() & 1 == 1 {
            let _ = rx.try_recv_into(&mut [0u8; 256]);
        }
    }

    // The hostile writes: all of body and data, or a few patches.
    let mode = inp.byte();
    if mode & 1 == 1 {
        let rest: Vec<u8> = (0..size - 128).map(|_| inp.byte()).collect();
        scribble(base, size, 128, &rest);
    } else {
        for _ in 0..(mode >> 1) % 8 {
            let off = 128 + usize::from(inp.u16()) % (size - 128);
            let len = usize::from(inp.byte() % 33);
            let patch: Vec<u8> = (0..len).map(|_| inp.byte()).collect();
            scribble(base, size, off, &patch);
        }
    }
    // Either keep the handles (a peer scribbles while we hold our role), or
    // claim the roles again, taking head and tail from the scribbled memory.
    // Dropping releases a role only while its word still names this
    // process; a scribbled word names some other process, dead (claimed
    // over) or, rarely, alive (pid and start time both match, or a pid
    // with an unknown start time): then the role is refused, a typed error.
    if mode & 2 == 2 {
        drop((tx, rx));
        match (ring.sender(), ring.receiver()) {
            (Ok(t), Ok(r)) => (tx, rx) = (t, r),
            _ => return,
        }
    }

    let mut corrupt = None;
    let mut check = |r: &Result<usize, RecvError>| match (r, corrupt) {
        (Ok(n), None) => assert!(*n as u64 <= max),
        (Err(RecvError::Corrupt(c)), None) => corrupt = Some(*c),
        (r, Some(c)) => assert_eq!(*r, Err(RecvError::Corrupt(c)), "corruption is sticky"),
        (Err(_), None) => {}
    };
    let mut buf = [0u8; 256];
    for _ in 0..256 {
        if inp.is_empty() {
            break;
        }
        match inp.byte() % 5 {
            0 => {
                let n = usize::from(inp.byte());
                let r = rx.try_recv_into(&mut buf[..n]);
                if let Err(RecvError::BufferTooSmall { needed }) = r {
                    assert!(needed as usize > n && needed <= max);
                } else {
                    check(&r);
                }
            }
            1 => {
                let r = rx.try_read().map(|f| {
                    let sum = f.iter().fold(0u8, |a, b| a.wrapping_add(*b));
                    std::hint::black_box(sum);
                    f.len()
                });
                check(&r);
            }
            2 => check(&rx.peek_len()),
            3 => {
                let len = usize::from(inp.byte());
                let _ = tx.try_send(&payload(len, 7));
            }
            _ => {
                let len = usize::from(inp.byte());
                let commit = inp.byte() & 1 == 1;
                if let Ok(mut w) = tx.try_reserve(len) {
                    assert_eq!(w.len(), len);
                    w.fill(0xa5);
                    if commit {
                        w.commit();
                    }
                }
            }
        }
    }

    // Drain: every call ends in a frame or an error, and the frames end.
    let mut frames = 0u64;
    loop {
        let r = rx.try_recv_into(&mut buf);
        assert!(!matches!(r, Err(RecvError::BufferTooSmall { .. })));
        check(&r);
        if r.is_err() {
            break;
        }
        frames += 1;
        // At most a ring of frames already seen, plus a ring after one
        // refresh of the tail (nobody moves it during the drain).
        assert!(frames <= cap / 4, "drain did not end");
    }
    drop((tx, rx));
    drop(mem);
});
