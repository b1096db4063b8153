//! How blocked MPMC calls sleep, are woken, and recover slots held by
//! processes that died (the loop shared with [`crate::msgqueue`]).
//!
//! `push`/`pop` spin ([`Spin`], chosen per view with
//! [`with_spin`](super::MpmcRing::with_spin)), then count themselves in
//! `empty_sleepers`/`full_sleepers` and sleep on the not-empty/not-full
//! [`EventCount`]. After each push, a producer loads `empty_sleepers` and,
//! only if it is not 0, wakes one consumer (a value satisfies one); pops do
//! the same for producers; batches and `close` wake all.
//!
//! That check costs a plain load, not a fence: its ordering comes from the
//! claim CAS on the slot that precedes it,
//! which is `SeqCst` (a `lock`ed instruction on x86 anyway). Against a
//! sleeper that counts itself, fences, then reads the word we CAS'd, either
//! we see the count or it sees our claim (the proof is
//! at [`sleepers`]). So a sleeper that finds the ring idle (no
//! claim in flight) can sleep until notified. One that finds a claim not yet
//! published (or freed) polls for about a microsecond (the publish is
//! usually that close), then naps (50 µs, doubling up to 20 ms), because
//! that claimer may have checked before the sleeper counted itself: it sees
//! the value at the end of the nap at the latest. Under loom, where `SeqCst`
//! loads are modelled as acquire loads, the check gets a fence placed after
//! the publishing store, which makes even in-flight waits exact; the model
//! checks that no wake-up is lost.
//!
//! # Recovery
//!
//! Vyukov's ring hands slots out in position order, so one slot that is
//! never published stops every consumer at it, and one never freed stops
//! every producer one lap later. Each state says who can move a slot on, so
//! a blocked call that finds its slot held for a whole nap recovers it,
//! with a CAS from exactly the word it found (a slot that moved on
//! meanwhile is left alone):
//!
//! - `W(p, pid)` whose owner is dead: the producer died writing. Its value was
//!   never complete; the consumer makes the slot `S` and steps over it.
//! - `R(p, pid)` whose owner is dead: the consumer died reading, and its value
//!   is lost with it. A producer one lap later frees the slot.
//!
//! A live owner's slot is never touched. Whether an owner lives is asked
//! (a read of `/proc` on Linux) only once a blocked call has napped for
//! [`OWNER_CHECK_NAP`]; who owns a slot, and why a reused pid cannot pass
//! for a dead owner, is in [`super::slot`].
//!
//! A push or pop claims its position by the CAS that takes the slot, so
//! there is no position claimed and not taken: every stuck slot has an
//! owner, and only a dead owner's slot is recovered (in both rings,
//! [`MpmcRing`](super::MpmcRing) and [`crate::msgqueue::MsgQueue`]).
//!
//! Under loom, recovery runs at the first sight of a held slot, with the
//! owner's liveness asked at once; models kill a thread at each point of
//! an operation (between its take and its owner record included), and
//! others let a live thread take a dead thread's pid over (the dead
//! owner's slot is still recovered; the reuser's own slots never are).
//!
//! A process killed while blocked leaves its sleeper count (and the
//! eventcount's waiter count) raised: every later push (pop) then pays a
//! fenced notify and a wake system call. That is slower, never wrong.

use core::time::Duration;

use super::{PopError, PushError};
use crate::ring::{nap, LIVENESS_SLICE};
use crate::sync::{spin_loop, AtomicU32, Ordering};
use crate::time::Deadline;
use crate::wait::{EventCount, Spin};

/// The nap length from which a blocked call, finding the slot it waits on
/// still owned, asks whether the owner process lives (a read of `/proc`).
pub(crate) const OWNER_CHECK_NAP: Duration = Duration::from_micros(800);
/// How many times a freshly blocked handle polls (with
/// spin hints, about a microsecond in all) before its first nap, whatever
/// its [`Spin`]. None under loom, whose notifiers are exact.
pub(crate) const GRACE_POLLS: u32 = if cfg!(multiproc_loom) { 0 } else { 32 };

/// The first nap of a blocked handle. Naps double up to
/// [`LIVENESS_SLICE`]; a notification ends them early.
pub(crate) const FIRST_NAP: Duration = Duration::from_micros(50);

/// What a claim found instead of a position to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// Full (push) or empty (pop), with nothing of the other kind in flight:
    /// whoever changes that will see a sleeper and notify.
    Idle,
    /// Full or empty only because another thread has claimed a position and
    /// not yet published (push) or freed (pop) its slot. It may not notify
    /// (it may have checked for sleepers before we counted ourselves): poll,
    /// and [`recover`](super::MpmcRing::recover) the slot if it stays stuck.
    InFlight(Stuck),
    /// The ring is closed (and, for a pop, drained).
    Closed,
    /// A sequence number contradicts the indices.
    Corrupt,
}

impl Miss {
    pub(crate) fn push_error<T>(self, v: T) -> PushError<T> {
        match self {
            Miss::Idle | Miss::InFlight(_) => PushError::Full(v),
            Miss::Closed => PushError::Disconnected(v),
            Miss::Corrupt => PushError::Corrupt(v),
        }
    }

    pub(crate) fn pop_error(self) -> PopError {
        match self {
            Miss::Idle | Miss::InFlight(_) => PopError::Empty,
            Miss::Closed => PopError::Disconnected,
            Miss::Corrupt => PopError::Corrupt,
        }
    }
}

/// A slot that a blocked call waits on while another process holds it:
/// the position the call wants and the `seq` word it found there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stuck {
    pub(crate) pos: u64,
    pub(crate) seq: u64,
}

/// What one poll of a blocking operation found.
pub(crate) enum Poll<R> {
    Ready(R),
    Idle,
    InFlight(Stuck),
}

/// Reads a sleeper count after this thread's claim CAS (on the slot), to
/// decide whether to notify.
///
/// The CAS and this load are `SeqCst`; the sleeper increments the count
/// (`SeqCst`), runs the `SeqCst` fence of `prepare_wait`, then reads the
/// index we CAS'd. By C++20 [atomics.order] p4, "we read the count before
/// its increment" and "it read the index before our CAS" would form a cycle
/// in the single total order S, so one of the two sees the other: either we
/// notify, or it sees our claim (and then waits for our publish by polling,
/// see [`Miss::InFlight`]). On x86 neither access needs a fence instruction:
/// this costs one plain load, where a notify check after every publish
/// would cost a `lock`ed instruction.
#[inline]
pub(crate) fn sleepers(word: &AtomicU32) -> u32 {
    // Loom models SeqCst loads and RMWs as AcqRel (see its README), weaker
    // than the C++ rules used above; the model gets the fence that those
    // rules make unnecessary in a real build.
    #[cfg(multiproc_loom)]
    crate::sync::fence(Ordering::SeqCst);
    word.load(Ordering::SeqCst)
}

/// Wakes one (or every) sleeper of `ec`, once a sleeper count said so.
#[cold]
#[inline(never)]
pub(crate) fn wake(ec: &EventCount, all: bool) {
    if all {
        ec.notify_all();
    } else {
        ec.notify_one();
    }
}

/// Runs `poll` until it is ready: spins per `spin`, then
/// counts itself in `sleepers` and sleeps on `ec` (while the other side
/// is idle) or naps (while one of its operations is in flight). `None`
/// if `deadline` passes first. A slot found stuck for a whole nap is
/// handed to `recover` (with whether to check its owner's liveness), which
/// returns whether it changed: the blocking loop of every MPMC ring
/// ([`MpmcRing`](super::MpmcRing), [`crate::msgqueue::MsgQueue`]).
pub(crate) fn block_on<R>(
    spin: Spin,
    ec: &EventCount,
    sleepers: &AtomicU32,
    deadline: Option<Deadline>,
    mut poll: impl FnMut() -> Poll<R>,
    mut recover: impl FnMut(Stuck, bool) -> bool,
) -> Option<R> {
    let mut backoff = spin.start();
    loop {
        if let Poll::Ready(r) = poll() {
            return Some(r);
        }
        if !backoff.spin() {
            break;
        }
    }
    // SeqCst, followed by the SeqCst fence in `prepare_wait`: pairs with
    // the SeqCst claim CAS and `sleepers` load of the other side.
    sleepers.fetch_add(1, Ordering::SeqCst);
    let mut nap_len = FIRST_NAP;
    let mut grace = GRACE_POLLS;
    // What the poll before the last nap found stuck: a slot is only
    // handed to `recover` once it has stayed so for a whole nap (a live
    // holder has usually handed it on by then).
    let mut last_stuck = None;
    let out = 'wait: loop {
        let key = ec.prepare_wait();
        let mut stuck = match poll() {
            Poll::Ready(r) => {
                ec.cancel_wait(key);
                break Some(r);
            }
            Poll::Idle => None,
            Poll::InFlight(s) => Some(s),
        };
        // Grace: the in-flight operation completes within moments
        // (unless its thread was preempted or killed); poll for about a
        // microsecond before the first nap.
        while stuck.is_some() && grace > 0 {
            grace -= 1;
            spin_loop();
            match poll() {
                Poll::Ready(r) => {
                    ec.cancel_wait(key);
                    break 'wait Some(r);
                }
                Poll::Idle => stuck = None,
                Poll::InFlight(s) => stuck = Some(s),
            }
        }
        if deadline.is_some_and(Deadline::has_passed) {
            ec.cancel_wait(key);
            break None;
        }
        match stuck {
            None => {
                let _ = ec.wait(key, deadline);
                nap_len = FIRST_NAP;
                last_stuck = None;
            }
            Some(s) => {
                // Unchanged over a whole nap: its holder was preempted,
                // or died. Ask whether the owner lives only once the wait
                // has grown long. (Under
                // loom, at once and always: the model explores both,
                // and its naps end only by a notification.)
                let unchanged = cfg!(multiproc_loom) || last_stuck == Some(s);
                let check_owner = cfg!(multiproc_loom) || nap_len >= OWNER_CHECK_NAP;
                if unchanged && recover(s, check_owner) {
                    ec.cancel_wait(key);
                    last_stuck = None;
                    continue;
                }
                last_stuck = Some(s);
                // Under loom this nap ends only by a notification. That
                // is sound in the model, whose `sleepers` fences *after*
                // the publishing store: a publisher that did not count
                // us has its publish seen by our poll (the two fences
                // are ordered in S). The real build's cheaper ordering
                // only makes us see its claim, hence a nap that ends on
                // its own.
                nap(ec, key, Deadline::after(nap_len).min(deadline));
                nap_len = (nap_len * 2).min(LIVENESS_SLICE);
            }
        }
    };
    // Relaxed: a count that stays high a little longer only costs the
    // other side a notify.
    sleepers.fetch_sub(1, Ordering::Relaxed);
    out
}
