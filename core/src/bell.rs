//! Waking between the two ends of a single-producer single-consumer ring:
//! the *bell*.
//!
//! The [`spsc`](crate::spsc) ring and the [`bytering`](crate::bytering)
//! frame ring each hold two bells: `not_empty`, where the consumer
//! (receiver) sleeps and the producer (sender) rings, and `not_full`, the
//! other way round. A blocked call spins briefly ([`Spin`], settable per
//! handle), then raises its bell's `asleep` flag, polls a few more times
//! (the grace, see below) and sleeps on its [`EventCount`] in naps of 20 ms
//! (the liveness slice). After each publishing store (`tail` or `head`),
//! the other end loads the flag; while it is raised, it runs the
//! eventcount's fenced notify, which ends the nap at once. Naps are not
//! shorter because a sleep with a timer earlier than the scheduler tick
//! pays for arming and cancelling it (a timer reprogram, a VM exit under a
//! hypervisor): 50 µs first naps made a sleeping round trip four times the
//! bare futex's.
//!
//! | waiter | ringer (the other end), after each publishing store |
//! |---|---|
//! | spin, polling | |
//! | `asleep = 1` | `if asleep != 0 { notify_all() }` (fence, load, wake) |
//! | `prepare_wait` (fence); poll; grace polls; nap | |
//! | ... woken or nap over: poll again | |
//! | `asleep = 0` once ready | |
//!
//! A ringer that leaves (drops its handle) does not ring: it releases its
//! role and runs the eventcount's fenced `notify_all` whatever the flag
//! says, so a waiter always learns of a departure at once.
//!
//! Why no fence on the ringer's side: a notify check that never misses a
//! waiter needs a store-load fence after *every* publish (the eventcount's
//! `notify_all`), which measured ten times slower than rtrb here (each fence
//! waits for the publishing stores to reach the other core; in the byte
//! ring it held 31% of `send_bytes`' samples). Without it, the
//! flag check can miss a waiter that raised its flag in the same instant, so
//! that one publish notifies nobody. That can only happen at the start of a
//! sleep (once the flag has reached the other core, every check sees it),
//! and the publish that missed it reaches the waiter within a store-buffer
//! drain: the grace polls catch it (in a stress test forcing a sleep on
//! every operation, they caught all of about 180 such races per 100 000
//! sleeps). Past the grace, the nap bounds the damage: the waiter sees the
//! value when its current nap ends (20 ms at most). No value is ever lost
//! and no wait outlasts its deadline. Under loom the ringer does fence,
//! which makes the check exact, and naps end only by notifications, so the
//! models check that the notification logic loses no wake-up.
//!
//! One waiter per bell: each ring end is a role that one handle holds at a
//! time. Two waiters on one bell (a misuse: two processes using one end at
//! once) only delay each other, by a nap at most: the first to wake clears
//! the flag the other raised.

use crate::region::ShmSafe;
use crate::ring::{nap, LIVENESS_SLICE};
use crate::role::RoleWord;
use crate::sync::{spin_loop, AtomicU32, Ordering};
use crate::time::Deadline;
use crate::wait::{EventCount, Spin};

/// How many times a blocked ring handle polls (with spin hints) between
/// raising its flag and its first nap: long enough for a store that a
/// ringer on another CPU made in the same instant to drain from its store
/// buffer (each poll of a line the ringer holds is a cross-core transfer,
/// about 100 ns), short enough not to delay a peer waiting for this CPU
/// (about 150 ns then). In a stress run (100 000 pops by a `Spin::NONE`
/// consumer, pushes 0-20 us apart, three runs) no pop was late by a nap
/// with 0, 4, 8 or 32 polls: the race this covers is rare. None under
/// loom, whose ringers are exact.
pub(crate) const GRACE_POLLS: u32 = if cfg!(multiproc_loom) { 0 } else { 4 };

/// One direction of wake-ups between the two ends of a ring: the *waiter*
/// sleeps on it, the *ringer* (the other end) rings it after each
/// publishing store. See the module docs for the protocol.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Bell {
    /// Where the waiter sleeps.
    ec: EventCount,
    /// 1 while the waiter is past its spin (napping, or about to), else 0.
    /// Written by the waiter only.
    asleep: AtomicU32,
}

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(Bell, [u8; 12]);
#[cfg(not(multiproc_loom))]
static_assertions::const_assert_eq!(core::mem::align_of::<Bell>(), 4);

// SAFETY: repr(C) of an EventCount and an atomic u32: valid for every bit
// pattern, no pointers; size and alignment pinned above.
unsafe impl ShmSafe for Bell {}

impl Bell {
    pub(crate) fn new() -> Self {
        Self {
            ec: EventCount::new(),
            asleep: AtomicU32::new(0),
        }
    }

    /// Ringer: call after every store that publishes (`tail` or `head`).
    /// While the waiter is not asleep this is one load of a line nobody
    /// writes: no fence, no `lock`ed instruction.
    #[inline(always)]
    pub(crate) fn ring(&self) {
        // In the model, the fence that makes the check below exact (it
        // pairs with the fence in the waiter's `prepare_wait`), so that
        // loom's untimed sleeps check that no wake-up is lost. The real
        // build leaves it out: a check that misses a waiter which has just
        // fallen asleep delays it by at most one nap.
        #[cfg(multiproc_loom)]
        crate::sync::fence(Ordering::SeqCst);
        // Relaxed: the flag carries no data; see above for staleness.
        if self.asleep.load(Ordering::Relaxed) != 0 {
            self.ring_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn ring_slow(&self) {
        // The eventcount's fenced check: wakes the waiter if it sleeps.
        self.ec.notify_all();
    }

    /// Ringer, when it leaves (after releasing its role): the fenced
    /// notify, flag or no flag, so a waiter that is about to sleep sees the
    /// release or is woken (the departure is rare; exactness matters more
    /// than its cost).
    pub(crate) fn ring_leaving(&self) {
        self.ec.notify_all();
    }

    /// A new waiter handle: clears the flag its predecessor left set when it
    /// died, so the ringer stops fencing.
    pub(crate) fn reset(&self) {
        // Relaxed: as in `block_on`.
        self.asleep.store(0, Ordering::Relaxed);
    }
}

/// How a blocking wait ended.
pub(crate) enum Woken<R> {
    /// `poll` returned this.
    Ready(R),
    /// The deadline passed (after a last poll).
    TimedOut,
    /// The peer's role is released or its holder is dead.
    PeerGone,
}

/// Blocks until `poll` returns `Some`: spins per `spin`, then raises the
/// bell's `asleep` flag and naps, checking every [`LIVENESS_SLICE`] that the
/// `peer` (the ringer's role) is still there.
pub(crate) fn block_on<R>(
    bell: &Bell,
    peer: &RoleWord,
    spin: Spin,
    deadline: Option<Deadline>,
    mut poll: impl FnMut() -> Option<R>,
) -> Woken<R> {
    let mut backoff = spin.start();
    while backoff.spin() {
        if let Some(r) = poll() {
            return Woken::Ready(r);
        }
    }
    // Relaxed: the SeqCst fence in `prepare_wait` below orders it before
    // our polls, and pairs with the ringer's publish (see `Bell::ring`).
    bell.asleep.store(1, Ordering::Relaxed);
    let out = sleep_on(bell, peer, deadline, &mut poll);
    // Relaxed: a ringer that sees the flag late only notifies for nothing.
    bell.asleep.store(0, Ordering::Relaxed);
    out
}

#[cold]
fn sleep_on<R>(
    bell: &Bell,
    peer: &RoleWord,
    deadline: Option<Deadline>,
    poll: &mut impl FnMut() -> Option<R>,
) -> Woken<R> {
    let mut slice_end = Deadline::after(LIVENESS_SLICE);
    let mut grace = GRACE_POLLS;
    loop {
        let key = bell.ec.prepare_wait();
        if let Some(r) = poll() {
            bell.ec.cancel_wait(key);
            return Woken::Ready(r);
        }
        // Grace, before the first nap only: a ringer that published in the
        // instant we raised the flag may have missed it, but its store
        // reaches us within a store-buffer drain; poll a few times rather
        // than sleep a whole nap on it.
        while grace > 0 {
            grace -= 1;
            spin_loop();
            if let Some(r) = poll() {
                bell.ec.cancel_wait(key);
                return Woken::Ready(r);
            }
        }
        if deadline.is_some_and(Deadline::has_passed) {
            bell.ec.cancel_wait(key);
            return Woken::TimedOut;
        }
        // One nap per liveness slice: a nap shorter than the scheduler
        // tick arms a timer that becomes the CPU's next event, and arming
        // and cancelling it (a timer reprogram, a VM exit under a
        // hypervisor) cost about 10 us per sleep, four times the futex
        // round trip itself; a notification ends the nap anyway.
        let until = slice_end.min(deadline);
        nap(&bell.ec, key, until);
        // Woken (most often by the ringer): look before announcing another
        // wait, which would cost two locked instructions and a fence.
        if let Some(r) = poll() {
            return Woken::Ready(r);
        }
        if slice_end.has_passed() {
            if peer.peer().is_gone() {
                return Woken::PeerGone;
            }
            slice_end = Deadline::after(LIVENESS_SLICE);
        }
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_tests {
    use super::*;
    use crate::sync::AtomicU64;
    use ::loom::sync::Arc;
    use ::loom::thread;

    /// A bell pair and the two positions they guard, as in a ring: `a`
    /// is published by the first thread and waited for by the second,
    /// `b` the other way round.
    struct Pair {
        a: AtomicU64,
        b: AtomicU64,
        /// The second thread sleeps here for `a`.
        a_bell: Bell,
        /// The first thread sleeps here for `b`.
        b_bell: Bell,
        peer: RoleWord,
    }

    fn wait_for(bell: &Bell, peer: &RoleWord, word: &AtomicU64, v: u64) {
        // Acquire: pairs with the Release store of the publisher.
        let r = block_on(bell, peer, Spin::NONE, None, || {
            (word.load(Ordering::Acquire) >= v).then_some(())
        });
        assert!(matches!(r, Woken::Ready(())));
    }

    /// Two rounds of ping-pong, each side sleeping at once (`Spin::NONE`)
    /// and ringing after each publish: every sleeper is woken. A lost
    /// wake-up is a loom deadlock (naps end only by notifications in the
    /// model), so this checks the flag, `prepare_wait`'s fence and the
    /// (model-only) ringer fence together, across a flag lowered and
    /// raised again.
    #[test]
    fn bell_ping_pong_loses_no_wakeup() {
        ::loom::model(|| {
            let p = Arc::new(Pair {
                a: AtomicU64::new(0),
                b: AtomicU64::new(0),
                a_bell: Bell::new(),
                b_bell: Bell::new(),
                peer: RoleWord::new(),
            });
            let q = Arc::clone(&p);
            let t = thread::spawn(move || {
                for i in 1..=2 {
                    wait_for(&q.a_bell, &q.peer, &q.a, i);
                    q.b.store(i, Ordering::Release);
                    q.b_bell.ring();
                }
            });
            for i in 1..=2 {
                p.a.store(i, Ordering::Release);
                p.a_bell.ring();
                wait_for(&p.b_bell, &p.peer, &p.b, i);
            }
            t.join().unwrap();
        });
    }
}
