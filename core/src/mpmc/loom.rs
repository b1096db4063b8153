extern crate std;
use super::blocking::*;
use super::slot::*;
use super::*;
use crate::identity::Identity;
use crate::test_util::leak;
use ::loom::thread;
use std::vec::Vec;

fn ring(cap: u64) -> MpmcRing<'static, u64> {
    let mem = leak(MpmcRing::<u64>::memory_size(cap).unwrap());
    MpmcRing::create(Region::from_mut_slice(mem), cap)
        .unwrap()
        .with_spin(Spin::NONE)
}

/// Two producers, one consumer, blocking calls: every value arrives
/// once, with no data race on the slots and no lost wake-up (which would
/// be a loom deadlock).
#[test]
fn mpmc_two_producers_one_consumer() {
    ::loom::model(|| {
        let r = ring(2);
        let t1 = thread::spawn(move || r.push(1).unwrap());
        let t2 = thread::spawn(move || r.push(2).unwrap());
        let mut got = [r.pop().unwrap(), r.pop().unwrap()];
        t1.join().unwrap();
        t2.join().unwrap();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

/// Two producers on a 1-slot ring: one blocks on the full ring until
/// the consumer frees the slot.
#[test]
fn mpmc_two_producers_block_on_full() {
    ::loom::model(|| {
        let r = ring(1);
        let t1 = thread::spawn(move || r.push(1).unwrap());
        let t2 = thread::spawn(move || r.push(2).unwrap());
        let mut got = [r.pop().unwrap(), r.pop().unwrap()];
        t1.join().unwrap();
        t2.join().unwrap();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

/// One producer, two consumers blocked on a 2-slot ring: each value is
/// popped exactly once, no data race, no lost wake-up.
#[test]
fn mpmc_one_producer_two_consumers() {
    ::loom::model(|| {
        let r = ring(2);
        let c1 = thread::spawn(move || r.pop().unwrap());
        let c2 = thread::spawn(move || r.pop().unwrap());
        r.push(1).unwrap();
        r.push(2).unwrap();
        let mut all = [c1.join().unwrap(), c2.join().unwrap()];
        all.sort_unstable();
        assert_eq!(all, [1, 2]);
        assert_eq!(r.try_pop(), Err(PopError::Empty));
    });
}

/// Close while a consumer may be blocked and values are in the ring:
/// the consumer drains both values, then sees Disconnected.
#[test]
fn mpmc_close_drains_then_disconnects() {
    ::loom::model(|| {
        let r = ring(2);
        let c = thread::spawn(move || {
            let a = r.pop();
            let b = r.pop();
            let c = r.pop();
            (a, b, c)
        });
        r.push(1).unwrap();
        r.push(2).unwrap();
        r.close();
        assert_eq!(
            c.join().unwrap(),
            (Ok(1), Ok(2), Err(PopError::Disconnected))
        );
    });
}

/// A pop blocked on the empty ring is woken by a push (a lost wake-up
/// would be a loom deadlock); a push blocked on the full ring is woken
/// by a pop.
#[test]
fn mpmc_blocking_pop_and_push_wake() {
    ::loom::model(|| {
        let r = ring(1);
        let t = thread::spawn(move || {
            assert_eq!(r.pop(), Ok(1));
            assert_eq!(r.pop(), Ok(2));
        });
        r.push(1).unwrap();
        r.push(2).unwrap();
        t.join().unwrap();
    });
}

/// `close` wakes a pop blocked on the empty ring, which then returns
/// Disconnected.
#[test]
fn mpmc_close_wakes_blocked_pop() {
    ::loom::model(|| {
        let r = ring(2);
        let t = thread::spawn(move || r.pop());
        r.close();
        assert_eq!(t.join().unwrap(), Err(PopError::Disconnected));
    });
}

/// Runs `last_act` on a thread that then dies (as if killed with
/// `SIGKILL`) and time passes: under loom naps end only by a
/// notification, where a real one ends on its own.
fn dies_after(r: MpmcRing<'static, u64>, last_act: fn(MpmcRing<'static, u64>)) {
    last_act(r);
    crate::sync::loom_die();
    r.parts.body.control.not_empty.notify_all();
    r.parts.body.control.not_full.notify_all();
}

/// A producer dies at `last_act` while another pushes 2: the consumer
/// gets the 2, whatever the dead producer left behind.
fn producer_dies(last_act: fn(MpmcRing<'static, u64>)) {
    ::loom::model(move || {
        let r = ring(2);
        let d = thread::spawn(move || dies_after(r, last_act));
        let p = thread::spawn(move || r.push(2).unwrap());
        assert_eq!(r.pop(), Ok(2));
        d.join().unwrap();
        p.join().unwrap();
    });
}

/// A producer dies right after the CAS that took its slot, before it
/// records its identity (its publish would move `tail` on): the other producer walks
/// past the held slot from the stale `tail`, and the consumer, once the
/// owner's pid is dead, steps over the held slot to the 2.
#[test]
fn mpmc_producer_dies_between_take_and_record() {
    producer_dies(|r| {
        let t = r.parts.body.tail.pos.load(Ordering::Relaxed);
        let want = r.free(t);
        let slot = r.slot(t);
        let _ = slot.seq.compare_exchange(
            want,
            busy(want, crate::sync::current_identity()),
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
    });
}

/// `close` races a push and a draining consumer: the push either lands
/// (and the consumer gets its value before Disconnected) or fails with
/// Disconnected (and the consumer gets nothing); never a value lost
/// behind a Disconnected, or one that appears after it. Fails without the
/// producer's read of the flag after its claim (`closed_after_claim`) or
/// the consumer's second look at the slot.
#[test]
fn mpmc_close_races_a_push() {
    ::loom::model(|| {
        let r = ring(2);
        let p = thread::spawn(move || r.push(1).is_ok());
        let c = thread::spawn(move || {
            let first = r.pop();
            let second = if first.is_ok() { r.pop() } else { first };
            (first, second)
        });
        r.close();
        let pushed = p.join().unwrap();
        let (first, second) = c.join().unwrap();
        if pushed {
            assert_eq!((first, second), (Ok(1), Err(PopError::Disconnected)));
        } else {
            assert_eq!(first, Err(PopError::Disconnected));
        }
        assert_eq!(r.try_pop(), Err(PopError::Disconnected));
    });
}

/// A producer dies while writing its slot (`W`): once it is dead, the
/// consumer steps over the slot.
#[test]
fn mpmc_producer_dies_mid_write() {
    producer_dies(|r| {
        let _ = r.claim_push();
    });
}

/// A consumer dies while reading its slot (`R`) of a full ring: once it
/// is dead, a blocked producer frees the slot (the dead consumer's
/// value is lost with it) and its value reaches a live consumer.
#[test]
fn mpmc_consumer_dies_mid_read() {
    ::loom::model(|| {
        let r = ring(1);
        r.push(1).unwrap();
        let d = thread::spawn(move || {
            dies_after(r, |r| {
                let _ = r.claim_pop().unwrap();
            })
        });
        let p = thread::spawn(move || r.push(2).unwrap());
        d.join().unwrap();
        assert_eq!(r.pop(), Ok(2));
        p.join().unwrap();
    });
}

/// A producer dies writing its slot (`W`) of a 1-slot ring, and a new
/// process (here the main thread) takes its pid over and pushes: the
/// consumer still steps over the dead writer's slot (its recorded
/// identity is dead, though its pid runs again), and never over the
/// reuser's, which lands in the same slot one lap later under the same
/// pid (the recoverer's clear of `owner` keeps the dead identity from
/// being read against it). Deadlocks on a pid-only check (the dead
/// slot stalls while the pid runs), and without the recoverer's clear.
#[test]
fn mpmc_reused_pid_of_a_dead_writer_does_not_stall_it() {
    ::loom::model(|| {
        let r = ring(1);
        let c = thread::spawn(move || r.pop());
        thread::spawn(move || {
            dies_after(r, |r| {
                let _ = r.claim_push();
            })
        })
        .join()
        .unwrap();
        crate::sync::loom_reuse_pid();
        r.push(2).unwrap();
        assert_eq!(c.join().unwrap(), Ok(2));
    });
}

/// A consumer pops normally and then dies; a new process takes its pid
/// over and pushes into the slot the dead consumer freed: a blocked
/// consumer that finds that push in flight (`W` under the reused pid,
/// before the pusher records its identity) must not take it for the
/// dead consumer's hold. Fails when `free_slot` does not clear
/// `owner`.
#[test]
fn mpmc_reused_pid_after_a_clean_pop_is_not_taken_for_the_dead() {
    ::loom::model(|| {
        let r = ring(1);
        r.push(1).unwrap();
        thread::spawn(move || dies_after(r, |r| assert_eq!(r.pop(), Ok(1))))
            .join()
            .unwrap();
        crate::sync::loom_reuse_pid();
        let c = thread::spawn(move || r.pop());
        r.push(2).unwrap();
        assert_eq!(c.join().unwrap(), Ok(2));
    });
}

/// A producer pushes normally and then dies; a new process takes its
/// pid over and pops that value: a producer blocked on the full ring
/// that finds the pop in flight (`R` under the reused pid) must not
/// free the slot under the reader (a data race on the value). Fails
/// when `publish` does not clear `owner`.
#[test]
fn mpmc_reused_pid_after_a_clean_push_is_not_taken_for_the_dead() {
    ::loom::model(|| {
        let r = ring(1);
        thread::spawn(move || dies_after(r, |r| r.push(1).unwrap()))
            .join()
            .unwrap();
        crate::sync::loom_reuse_pid();
        let p = thread::spawn(move || r.push(2).unwrap());
        assert_eq!(r.pop(), Ok(1));
        assert_eq!(r.pop(), Ok(2));
        p.join().unwrap();
    });
}

/// Batch push and pop against a concurrent single pop.
#[test]
fn mpmc_slices() {
    ::loom::model(|| {
        let r = ring(2);
        let t = thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < 3 {
                let mut out = [0; 2];
                let n = r.pop_slice(&mut out);
                if n == 0 {
                    thread::yield_now();
                }
                got.extend_from_slice(&out[..n]);
            }
            got
        });
        let mut sent = 0;
        let vs = [1, 2, 3];
        while sent < 3 {
            let n = r.push_slice(&vs[sent..]);
            if n == 0 {
                thread::yield_now();
            }
            sent += n;
        }
        assert_eq!(t.join().unwrap(), [1, 2, 3]);
    });
}
