//! loom models of the message queue: threads stand for processes,
//! `sync::loom_die` for a `kill -9`. Run with
//! `RUSTFLAGS="--cfg multiproc_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p multiproc-core --release --lib msgqueue`.

extern crate std;

use super::*;
use crate::mpmc::slot::{busy, free_word};
use crate::test_util::leak;
use ::loom::thread;
use std::vec::Vec;

const MAX: u64 = 4;

fn queue(cap: u64) -> MsgQueue<'static> {
    let mem = leak(MsgQueue::memory_size(cap, MAX).unwrap());
    MsgQueue::create(Region::from_mut_slice(mem), cap, MAX)
        .unwrap()
        .with_spin(Spin::NONE)
}

/// The message `n`: `n` bytes of value `n` (so its length and its bytes
/// both say which it is).
fn msg(n: u8) -> Vec<u8> {
    std::vec![n; n as usize]
}

/// A blocking receive, checked: returns `n` for the message `msg(n)`.
fn recv(q: MsgQueue<'static>) -> Result<u8, RecvError> {
    let mut buf = [0u8; MAX as usize];
    let len = q.recv_into(&mut buf)?;
    assert!(
        buf[..len].iter().all(|&b| b as usize == len),
        "torn message"
    );
    Ok(len as u8)
}

/// Two producers, one consumer, blocking calls: every message arrives
/// once and whole, with no data race on the slots' lengths and no lost
/// wake-up (which would be a loom deadlock).
#[test]
fn msgqueue_two_producers_one_consumer() {
    ::loom::model(|| {
        let q = queue(2);
        let t1 = thread::spawn(move || q.send(&msg(1)).unwrap());
        let t2 = thread::spawn(move || {
            let mut w = q.send_ref_deadline(None).unwrap();
            w[..2].copy_from_slice(&msg(2));
            w.commit(2).unwrap();
        });
        let mut got = [recv(q).unwrap(), recv(q).unwrap()];
        t1.join().unwrap();
        t2.join().unwrap();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

/// Two producers on a 1-slot queue: one blocks on the full queue until the
/// consumer frees the slot.
#[test]
fn msgqueue_two_producers_block_on_full() {
    ::loom::model(|| {
        let q = queue(1);
        let t1 = thread::spawn(move || q.send(&msg(3)).unwrap());
        let t2 = thread::spawn(move || q.send(&msg(4)).unwrap());
        let mut got = [recv(q).unwrap(), recv(q).unwrap()];
        t1.join().unwrap();
        t2.join().unwrap();
        got.sort_unstable();
        assert_eq!(got, [3, 4]);
    });
}

/// One producer, two blocked consumers: each message is received exactly
/// once.
#[test]
fn msgqueue_one_producer_two_consumers() {
    ::loom::model(|| {
        let q = queue(2);
        let c1 = thread::spawn(move || recv(q).unwrap());
        let c2 = thread::spawn(move || {
            let r = q.recv_ref_deadline(None).unwrap();
            assert!(r.iter().all(|&b| b as usize == r.len()));
            r.len() as u8
        });
        q.send(&msg(1)).unwrap();
        q.send(&msg(2)).unwrap();
        let mut all = [c1.join().unwrap(), c2.join().unwrap()];
        all.sort_unstable();
        assert_eq!(all, [1, 2]);
        let mut buf = [0u8; MAX as usize];
        assert_eq!(q.try_recv_into(&mut buf), Err(RecvError::Empty));
    });
}

/// A receive blocked on the empty queue is woken by a send, and a send
/// blocked on the full queue by a receive: a lost wake-up is a deadlock.
#[test]
fn msgqueue_sleep_and_wake() {
    ::loom::model(|| {
        let q = queue(1);
        let t = thread::spawn(move || {
            assert_eq!(recv(q), Ok(1));
            assert_eq!(recv(q), Ok(2));
        });
        q.send(&msg(1)).unwrap();
        q.send(&msg(2)).unwrap();
        t.join().unwrap();
    });
}

/// `close` wakes a receive blocked on the empty queue, after it drains
/// what was sent.
#[test]
fn msgqueue_close_drains_then_wakes() {
    ::loom::model(|| {
        let q = queue(2);
        let t = thread::spawn(move || (recv(q), recv(q)));
        q.send(&msg(2)).unwrap();
        q.close();
        assert_eq!(t.join().unwrap(), (Ok(2), Err(RecvError::Disconnected)));
    });
}

/// Runs `last_act` on a thread that then dies (as if killed) and time
/// passes: under loom naps end only by a notification.
fn dies_after(q: MsgQueue<'static>, last_act: fn(MsgQueue<'static>)) {
    last_act(q);
    crate::sync::loom_die();
    q.parts.body.ring.control.not_empty.notify_all();
    q.parts.body.ring.control.not_full.notify_all();
}

/// A producer dies at `last_act` while another sends `msg(2)`: the
/// consumer gets it, whatever the dead producer left behind, and never a
/// half-written message.
fn producer_dies(last_act: fn(MsgQueue<'static>)) {
    ::loom::model(move || {
        let q = queue(2);
        let d = thread::spawn(move || dies_after(q, last_act));
        let p = thread::spawn(move || q.send(&msg(2)).unwrap());
        assert_eq!(recv(q), Ok(2));
        d.join().unwrap();
        p.join().unwrap();
    });
}

/// A producer dies while writing its message (its slot `W`, half the bytes
/// and no length written): the consumer steps over the slot.
#[test]
fn msgqueue_producer_dies_mid_send() {
    producer_dies(|q| {
        // Two slots, two messages: never full.
        let mut w = q.try_send_ref().unwrap();
        w[0] = 9;
        core::mem::forget(w);
    });
}

/// A producer dies right after the CAS that took its slot, before it
/// records its identity (its publish would move `tail` on): the other
/// producer walks past the held slot from the stale `tail`, and the
/// consumer, once the owner's pid is dead, steps over the held slot to the
/// 2.
#[test]
fn msgqueue_producer_dies_between_take_and_record() {
    producer_dies(|q| {
        let t = q.parts.body.ring.tail.pos.load(Ordering::Relaxed);
        let want = free_word(q.capacity(), t);
        let _ = q.slot(t).seq.compare_exchange(
            want,
            busy(want, crate::sync::current_identity()),
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
    });
}

/// `close` races a send and a draining consumer: the send either lands
/// (and the consumer gets its message before Disconnected) or fails with
/// Disconnected (and the consumer gets nothing); never a message lost
/// behind a Disconnected, or one that appears after it. Fails without the
/// producer's read of the flag after its claim (`closed_after_claim`) or
/// the consumer's second look at the slot (`empty_or_drained`).
#[test]
fn msgqueue_close_races_a_send() {
    ::loom::model(|| {
        let q = queue(2);
        let p = thread::spawn(move || q.send(&msg(1)).is_ok());
        let c = thread::spawn(move || {
            let first = recv(q);
            let second = if first.is_ok() { recv(q) } else { first };
            (first, second)
        });
        q.close();
        let sent = p.join().unwrap();
        let (first, second) = c.join().unwrap();
        if sent {
            assert_eq!((first, second), (Ok(1), Err(RecvError::Disconnected)));
        } else {
            assert_eq!(first, Err(RecvError::Disconnected));
        }
        let mut buf = [0u8; MAX as usize];
        assert_eq!(q.try_recv_into(&mut buf), Err(RecvError::Disconnected));
    });
}

/// A consumer dies while reading (its slot `R`) on a full 1-slot queue: a
/// blocked producer frees the slot once it is dead, and its message
/// reaches a live consumer.
#[test]
fn msgqueue_consumer_dies_mid_read() {
    ::loom::model(|| {
        let q = queue(1);
        q.send(&msg(1)).unwrap();
        let d =
            thread::spawn(move || dies_after(q, |q| core::mem::forget(q.try_recv_ref().unwrap())));
        let p = thread::spawn(move || q.send(&msg(3)).unwrap());
        d.join().unwrap();
        assert_eq!(recv(q), Ok(3));
        p.join().unwrap();
    });
}
