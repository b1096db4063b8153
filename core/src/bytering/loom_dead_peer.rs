//! loom models of a byte ring recovering from a dead peer: a sender killed
//! while writing a frame in place, a receiver killed while reading one,
//! and the handle that claims the dead one's role resuming the stream.
//! Threads stand for processes, `sync::loom_die` for a `kill -9` (a dead
//! handle's destructor never runs: `mem::forget`). Under loom the clock is
//! frozen, so a blocked call never reaches its liveness check: the
//! survivors use the non-blocking calls. Run with
//! `RUSTFLAGS="--cfg multiproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p multiproc-core --release --lib bytering::loom_dead_peer`.

extern crate std;

use super::*;
use crate::role::Peer;
use ::loom::thread;
use std::vec::Vec;

fn ring(capacity: u64, max_frame: u64) -> ByteRing<'static> {
    let mem = crate::test_util::leak(ByteRing::memory_size(capacity).unwrap());
    ByteRing::create(Region::from_mut_slice(mem), capacity, max_frame).unwrap()
}

/// Frame `i`: `len` bytes, each naming `i` and its position, so a frame
/// torn or mixed with another one does not pass for frame `i`.
fn frame(i: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| i.wrapping_mul(16).wrapping_add(k as u8))
        .collect()
}

/// Sends `msg`, retrying while the ring is full.
fn send(tx: &mut FrameSender<'_>, msg: &[u8]) {
    loop {
        match tx.try_send(msg) {
            Ok(()) => return,
            Err(SendError::Full) => thread::yield_now(),
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// The sender sends frame 0, then reserves frame 1, writes half of it in
/// place and is killed before committing; a new sender claims the role
/// from the dead one, sends frame 2 and leaves cleanly. The receiver,
/// receiving all along, gets exactly frames 0 and 2, whole, then
/// `Disconnected`: never a byte of frame 1 (and loom tracks every data
/// byte, so a frame read while written is a race).
#[test]
fn sender_killed_mid_frame_is_replaced() {
    ::loom::model(|| {
        let r = ring(64, 24);
        let mut rx = r.receiver().unwrap();
        let dying = thread::spawn(move || {
            let mut tx = r.sender().unwrap();
            tx.try_send(&frame(0, 12)).unwrap();
            {
                let mut w = tx.try_reserve(16).unwrap();
                w[..8].copy_from_slice(&frame(1, 8));
                // Killed here: the frame is never committed (the writer
                // has no destructor: going out of scope is the same as a
                // kill), the handle never dropped.
            }
            core::mem::forget(tx);
            crate::sync::loom_die();
            crate::sync::current_pid()
        });
        let next = thread::spawn(move || {
            let dead = dying.join().unwrap();
            assert_eq!(r.body().meta.0.producer.peer(), Peer::Dead(dead));
            let mut tx = r.sender().unwrap();
            send(&mut tx, &frame(2, 16));
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 24];
        loop {
            match rx.try_recv_into(&mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(RecvError::Empty) => thread::yield_now(),
                Err(RecvError::Disconnected) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        next.join().unwrap();
        assert_eq!(got, [frame(0, 12), frame(2, 16)]);
    });
}

/// The receiver holds frame 0 in place (`try_read`) and is killed before
/// releasing it, while the sender sends frames 1 and 2 (the second fits
/// only once frame 0 is freed); a new receiver claims the role from the
/// dead one. It reads frame 0 again (at least once across a receiver's
/// death), then 1 and 2, and the sender never overwrites the frame the
/// dead receiver was reading (loom would see the race).
#[test]
fn receiver_killed_mid_read_is_replaced() {
    ::loom::model(|| {
        let r = ring(64, 24);
        let mut tx = r.sender().unwrap();
        tx.try_send(&frame(0, 24)).unwrap();
        let dying = thread::spawn(move || {
            let mut rx = r.receiver().unwrap();
            let f = rx.try_read().unwrap();
            assert_eq!(&*f, &frame(0, 24)[..]);
            // Killed here: the frame is never released, the handle never
            // dropped.
            core::mem::forget(f);
            core::mem::forget(rx);
            crate::sync::loom_die();
        });
        let next = thread::spawn(move || {
            dying.join().unwrap();
            let mut rx = r.receiver().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 24];
            while got.len() < 3 {
                match rx.try_recv_into(&mut buf) {
                    Ok(n) => got.push(buf[..n].to_vec()),
                    Err(RecvError::Empty) => thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            }
            got
        });
        send(&mut tx, &frame(1, 16));
        send(&mut tx, &frame(2, 24));
        assert_eq!(
            next.join().unwrap(),
            [frame(0, 24), frame(1, 16), frame(2, 24)]
        );
    });
}
