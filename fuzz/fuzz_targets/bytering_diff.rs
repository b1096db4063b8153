//! Differential test: a byte ring against a `VecDeque` model.
//!
//! The input picks a capacity and `max_frame`, then a sequence of
//! operations (sends of various sizes by copy or in place, aborted
//! reservations, receives into buffers that may be too small, in-place
//! reads, peeks, dropping and re-claiming either role). The model predicts
//! every result, including exactly when the ring is full: it places frames
//! as the module docs specify (8-byte header, payload padded to 8, a wrap
//! marker when a frame does not fit before the end).
#![no_main]

use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use multiproc_core::bytering::{ByteRing, FrameReceiver, FrameSender, RecvError, SendError};
use multiproc_core::region::Region;

#[repr(C, align(128))]
#[derive(Clone, Copy)]
struct Line([u8; 128]);

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
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the ring should hold: positions, and each frame with the bytes its
/// release frees.
struct Model {
    cap: u64,
    max: u64,
    tail: u64,
    head: u64,
    frames: VecDeque<(Vec<u8>, u64)>,
    sender: bool,
    receiver: bool,
}

impl Model {
    fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let len = msg.len() as u64;
        if len > self.max {
            return Err(SendError::TooLarge { len, max: self.max });
        }
        if !self.receiver {
            return Err(SendError::Disconnected);
        }
        let size = 8 + len.div_ceil(8) * 8;
        let room = self.cap - self.tail % self.cap;
        let advance = if size <= room { size } else { room + size };
        if advance > self.cap - (self.tail - self.head) {
            return Err(SendError::Full);
        }
        self.tail += advance;
        self.frames.push_back((msg.to_vec(), advance));
        Ok(())
    }

    fn front(&self) -> Result<&[u8], RecvError> {
        match self.frames.front() {
            Some((m, _)) => Ok(m),
            None if self.sender => Err(RecvError::Empty),
            None => Err(RecvError::Disconnected),
        }
    }

    fn pop(&mut self) {
        let (_, advance) = self.frames.pop_front().unwrap();
        self.head += advance;
    }
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_mul(29).wrapping_add(i as u8))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let cap = 64u64 << (inp.byte() % 5);
    let limit = ByteRing::max_frame_for(cap).unwrap();
    let max = u64::from(inp.byte()) % (limit + 1);
    let size = ByteRing::memory_size(cap).unwrap();
    let mut mem = vec![Line([0; 128]); size.div_ceil(128)];
    // SAFETY: Line is 128 plain bytes with no padding.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(mem.as_mut_ptr().cast::<u8>(), mem.len() * 128) };
    let ring = ByteRing::create(Region::from_mut_slice(bytes), cap, max).unwrap();
    let (tx, rx) = ring.split().unwrap();
    let mut tx: Option<FrameSender<'_>> = Some(tx);
    let mut rx: Option<FrameReceiver<'_>> = Some(rx);
    let mut model = Model {
        cap,
        max,
        tail: 0,
        head: 0,
        frames: VecDeque::new(),
        sender: true,
        receiver: true,
    };
    let mut buf = vec![0u8; limit as usize + 16];
    let mut step = 0u8;

    while !inp.is_empty() {
        step = step.wrapping_add(1);
        let op = inp.byte();
        match (op % 8, tx.as_mut(), rx.as_mut()) {
            // Send by copy; a length byte over the limit tests TooLarge.
            (0 | 1, Some(tx), _) => {
                let len = usize::from(inp.byte()) % (max as usize + 2);
                let msg = payload(len, step);
                assert_eq!(tx.try_send(&msg), model.send(&msg));
            }
            // Send in place, or reserve and abort.
            (2, Some(tx), _) => {
                let len = usize::from(inp.byte()) % (max as usize + 2);
                let msg = payload(len, step);
                let commit = op & 0x80 == 0;
                let got = tx.try_reserve(len).map(|mut w| {
                    assert_eq!(w.len(), len);
                    w.copy_from_slice(&msg);
                    if commit {
                        w.commit();
                    }
                });
                if commit {
                    assert_eq!(got, model.send(&msg));
                } else {
                    // An aborted reservation succeeds exactly when a send
                    // would, and changes nothing.
                    let mut probe = Model {
                        frames: VecDeque::new(),
                        ..model
                    };
                    assert_eq!(got, probe.send(&msg));
                }
            }
            // Receive by copy into a buffer that may be too small.
            (3 | 4, _, Some(rx)) => {
                let n = usize::from(inp.byte()) % (max as usize + 2);
                let got = rx.try_recv_into(&mut buf[..n]);
                match model.front() {
                    Ok(m) if m.len() > n => {
                        assert_eq!(
                            got,
                            Err(RecvError::BufferTooSmall {
                                needed: m.len() as u64
                            })
                        );
                    }
                    Ok(m) => {
                        assert_eq!(got, Ok(m.len()));
                        assert_eq!(&buf[..m.len()], m);
                        model.pop();
                    }
                    Err(e) => assert_eq!(got, Err(e)),
                }
            }
            // Receive in place.
            (5, _, Some(rx)) => match (rx.try_read(), model.front()) {
                (Ok(f), Ok(m)) => {
                    assert_eq!(&*f, m);
                    f.release();
                    model.pop();
                }
                (Err(e), Err(w)) => assert_eq!(e, w),
                (got, want) => panic!("try_read gave {:?}, model {want:?}", got.map(|f| f.len())),
            },
            // Peek.
            (6, _, Some(rx)) => {
                assert_eq!(rx.peek_len(), model.front().map(|m| m.len()));
            }
            // Drop a role, or claim it again.
            (7, _, _) => {
                if op & 0x80 == 0 {
                    if tx.take().is_none() {
                        tx = Some(ring.sender().unwrap());
                    }
                    model.sender = tx.is_some();
                } else {
                    if rx.take().is_none() {
                        rx = Some(ring.receiver().unwrap());
                    }
                    model.receiver = rx.is_some();
                }
            }
            _ => {}
        }
    }

    // Whatever is left drains in order.
    if let Some(rx) = rx.as_mut() {
        while let Ok(m) = model.front() {
            let m = m.to_vec();
            assert_eq!(rx.try_recv_into(&mut buf), Ok(m.len()));
            assert_eq!(&buf[..m.len()], &m[..]);
            model.pop();
        }
        assert_eq!(rx.try_recv_into(&mut buf), model.front().map(|m| m.len()));
    }
    drop((tx, rx));
});
