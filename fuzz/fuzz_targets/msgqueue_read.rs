//! Reading a message queue whose shared state was scribbled on never panics
//! and never touches memory outside the region.
//!
//! The input builds a valid queue (capacity 1 to 16, `max_message` 0 to
//! 255, a few messages), then overwrites parts of the region behind its
//! back (the indices, slot words and data, or also the header and config,
//! in which case a fresh `attach` must refuse the region or give a view
//! that is safe to use), then drives sends and receives with non-blocking
//! calls, and finally drains the receiver. The region is an allocation of
//! exactly its size, so AddressSanitizer catches any access past its end.
//! Also checked: a received message is never longer than `max_message`,
//! and the drain ends.
#![no_main]

use std::alloc::{alloc_zeroed, dealloc, Layout};

use libfuzzer_sys::fuzz_target;
use multiproc_core::msgqueue::{MsgQueue, RecvError};
use multiproc_core::region::Region;
use std::ptr::NonNull;

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

    fn region(&self) -> Region<'_> {
        // SAFETY: the allocation is valid for its length while `self`
        // lives; this single-threaded target reaches it through the queue
        // and `scribble` only, one at a time.
        unsafe { Region::from_raw_parts(NonNull::new(self.ptr).unwrap(), self.layout.size()) }
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

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let cap = 1 + u64::from(inp.byte() % 16);
    let max = u64::from(inp.byte());
    let size = MsgQueue::memory_size(cap, max).unwrap();
    let mem = Aligned::new(size);
    let created = MsgQueue::create(mem.region(), cap, max).unwrap();
    for i in 0..inp.byte() % 20 {
        let _ = created.try_send(&payload(usize::from(i) * 13 % (max as usize + 1), i));
    }

    // Scribble: patches at offsets chosen by the input. Mode 0 spares the
    // header and config (the live view is used); mode 1 may hit them too
    // (a fresh attach must cope).
    let whole = inp.byte() & 1 == 1;
    let floor = if whole { 0 } else { 128 };
    for _ in 0..inp.byte() % 8 {
        let off = floor + usize::from(inp.u16()) % (size - floor).max(1);
        let len = usize::from(inp.byte() % 16);
        let src: Vec<u8> = (0..len).map(|_| inp.byte()).collect();
        // The config line (512..640) is cached by the live view; only a
        // fresh attach reads it.
        if !whole && (512..640).contains(&off) {
            continue;
        }
        let n = src.len().min(size - off);
        // SAFETY: `off + n <= size`, the allocation's length; nothing else
        // touches the bytes now (single-threaded target).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), mem.ptr.add(off), n) };
    }
    let q = if whole {
        match MsgQueue::attach(mem.region()) {
            Ok(q) => q,
            Err(_) => return,
        }
    } else {
        created
    };
    let max = q.max_message();
    let mut buf = vec![0u8; max];
    let check = |r: &Result<usize, RecvError>| {
        if let Ok(n) = r {
            assert!(*n <= max, "message longer than max_message");
        }
    };

    while !inp.is_empty() {
        match inp.byte() % 5 {
            0 => check(&q.try_recv_into(&mut buf)),
            1 => {
                let r = q.try_recv_ref().map(|m| {
                    // Touch every byte (ASan checks them).
                    m.iter().fold(0u8, |a, &b| a ^ b);
                    m.len()
                });
                check(&r);
            }
            2 => {
                let len = usize::from(inp.byte());
                let _ = q.try_send(&payload(len, 7));
            }
            3 => {
                let len = usize::from(inp.byte());
                let commit = inp.byte() & 1 == 1;
                if let Ok(mut w) = q.try_send_ref() {
                    assert_eq!(w.len(), max);
                    w.fill(0xa5);
                    if commit {
                        let _ = w.commit(len);
                    }
                }
            }
            _ => {
                let _ = (q.len(), q.is_empty(), q.is_full(), q.is_closed());
            }
        }
    }

    // Drain: every call ends in a message or an error, and the messages
    // end: each success consumes a position, and nobody sends meanwhile.
    let mut got = 0u64;
    loop {
        let r = q.try_recv_into(&mut buf);
        check(&r);
        match r {
            Ok(_) | Err(RecvError::BadLength { .. }) => got += 1,
            Err(_) => break,
        }
        assert!(got <= 4 * q.capacity() + 64, "drain did not end");
    }
    drop(mem);
});
