extern crate std;
use super::*;
use ::loom::thread;
use std::vec;

/// A ring in leaked memory, so threads can own its handles.
fn ring(capacity: u64, max_frame: u64) -> ByteRing<'static> {
    let mem = crate::test_util::leak(ByteRing::memory_size(capacity).unwrap());
    ByteRing::create(Region::from_mut_slice(mem), capacity, max_frame).unwrap()
}

fn frame(i: u8, len: usize) -> vec::Vec<u8> {
    (0..len)
        .map(|k| i.wrapping_mul(16).wrapping_add(k as u8))
        .collect()
}

/// Three frames through a 64-byte ring: the third needs a wrap marker
/// and, unless the receiver was quick, waits for room; the receiver
/// waits whenever the ring is empty. Order and contents are checked, and
/// loom checks every data access is ordered by the protocol.
#[test]
fn frames_cross_the_wrap_with_blocking() {
    ::loom::model(|| {
        let ring = ring(64, 24);
        // Each role is claimed by the thread (loom's process) that
        // uses and drops it: a release is a CAS from the holder's own
        // identity, which differs per thread under loom.
        let mut rx = ring.receiver().unwrap();
        rx.set_spin(Spin::NONE);
        let sizes = [17usize, 10, 16];
        let t = thread::spawn(move || {
            let mut tx = ring.sender().unwrap();
            tx.set_spin(Spin::NONE);
            for (i, &n) in sizes.iter().enumerate() {
                tx.send(&frame(i as u8, n)).unwrap();
            }
        });
        let mut buf = [0u8; 24];
        for (i, &n) in sizes.iter().enumerate() {
            let got = rx.recv_into(&mut buf).unwrap();
            assert_eq!(&buf[..got], &frame(i as u8, n)[..]);
        }
        assert_eq!(rx.recv_into(&mut buf), Err(RecvError::Disconnected));
        t.join().unwrap();
    });
}

/// Two full-size frames fill the ring, so the third send finds it full
/// unless the receiver was quick, and each receive may find it empty:
/// both sides sleep at once (`Spin::NONE`) and only the other side's
/// publish, through the bells, wakes them. The sender never leaves (its
/// handle is forgotten, as by a process that stays), so no departure's
/// fenced notify can hide a lost ring. A lost wake-up is a loom deadlock:
/// naps end only by notifications in the model.
#[test]
fn blocked_sender_and_receiver_woken_through_the_bells() {
    ::loom::model(|| {
        let ring = ring(64, 24);
        let mut rx = ring.receiver().unwrap();
        rx.set_spin(Spin::NONE);
        let t = thread::spawn(move || {
            let mut tx = ring.sender().unwrap();
            tx.set_spin(Spin::NONE);
            for i in 0..3u8 {
                tx.send(&frame(i, 24)).unwrap();
            }
            core::mem::forget(tx);
        });
        let mut buf = [0u8; 24];
        for i in 0..3u8 {
            let got = rx.recv_into(&mut buf).unwrap();
            assert_eq!(&buf[..got], &frame(i, 24)[..]);
        }
        t.join().unwrap();
    });
}

/// The zero-copy paths across the wrap: in-place writes and reads.
#[test]
fn zero_copy_across_the_wrap() {
    ::loom::model(|| {
        let ring = ring(64, 24);
        let (mut tx, mut rx) = ring.split().unwrap();
        tx.set_spin(Spin::NONE);
        rx.set_spin(Spin::NONE);
        let sizes = [24usize, 8, 24];
        let t = thread::spawn(move || {
            for (i, &n) in sizes.iter().enumerate() {
                let mut w = tx.reserve(n).unwrap();
                w.copy_from_slice(&frame(i as u8, n));
                w.commit();
            }
        });
        for (i, &n) in sizes.iter().enumerate() {
            let r = rx.read().unwrap();
            assert_eq!(&*r, &frame(i as u8, n)[..]);
        }
        t.join().unwrap();
    });
}

/// A blocked sender is woken by the receiver leaving.
#[test]
fn blocked_send_woken_by_receiver_drop() {
    ::loom::model(|| {
        let ring = ring(64, 24);
        // The receiver is claimed by the thread that drops it (see
        // `frames_cross_the_wrap_with_blocking`); until then the sender
        // finds it never claimed, which is not gone.
        let mut tx = ring.sender().unwrap();
        tx.set_spin(Spin::NONE);
        tx.try_send(&[1; 24]).unwrap();
        tx.try_send(&[2; 24]).unwrap();
        let t = thread::spawn(move || drop(ring.receiver().unwrap()));
        assert_eq!(tx.send(&[3; 8]), Err(SendError::Disconnected));
        t.join().unwrap();
    });
}
