//! A claim gate: a consumer takes numbered items in order, and the
//! producer may take back, atomically, the items not yet taken.
//!
//! The pool's owner queues chunks to a worker through that worker's ring;
//! a chunk sitting behind a long one could wait there while another worker
//! is idle. The gate lets the owner *revoke* queued chunks the worker has
//! not started, and send them elsewhere, with no chance that both run
//! them: before it runs item `n`, the worker claims it; the owner revokes
//! "every item from the first unclaimed one up to `end`". Both are one
//! compare-and-swap on one word, so exactly one of them wins each item:
//!
//! ```text
//!   word = claimed (low 32 bits) | revoked_end (high 32 bits)
//!
//!   worker, item n = claimed:   CAS(w, claimed + 1): run it if n is not in
//!                               [first revoked, revoked_end), else skip it
//!   owner, revoke up to end:    CAS(w, revoked_end = end), if claimed < end;
//!                               the items [claimed, end) are the owner's again
//! ```
//!
//! Counters are 32-bit and wrap; the distance between `claimed` and
//! `revoked_end` stays far below 2^31 (at most the items queued at once),
//! which is what the wrapping comparison needs. A worker that skips a
//! revoked item still counts it as claimed, so `claimed` is also "items
//! read from the ring": after the worker's death, the owner knows that
//! every item below `claimed` was run or revoked, and none above was.
//!
//! # Examples
//!
//! ```
//! use multiproc_core::claim_gate::{ClaimGate, Claim};
//!
//! let g = ClaimGate::new();
//! assert_eq!(g.claim(), Claim::Run);      // item 0 runs
//! // Items 1, 2 and 3 were queued; the owner takes them back.
//! assert_eq!(g.revoke(4), Some(1));
//! assert_eq!(g.claim(), Claim::Skip);     // item 1
//! assert_eq!(g.claim(), Claim::Skip);     // item 2
//! assert_eq!(g.claim(), Claim::Skip);     // item 3
//! assert_eq!(g.claim(), Claim::Run);      // item 4, queued afterwards
//! assert_eq!(g.claimed(), 5);
//! assert_eq!(g.revoke(5), None);          // nothing left to take back
//! ```

use crate::sync::{AtomicU64, Ordering};

/// The gate word; see the [module docs](self).
#[repr(C)]
#[derive(Debug)]
pub struct ClaimGate {
    word: AtomicU64,
}

static_assertions::assert_eq_size!(ClaimGate, u64);
static_assertions::assert_eq_align!(ClaimGate, u64);

/// What the consumer does with the item it claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Run it: it is the consumer's.
    Run,
    /// Skip it: the producer took it back.
    Skip,
}

fn split(w: u64) -> (u32, u32) {
    (w as u32, (w >> 32) as u32)
}

fn join(claimed: u32, end: u32) -> u64 {
    u64::from(claimed) | (u64::from(end) << 32)
}

/// `a < b` on wrapping 32-bit counters less than 2^31 apart.
fn before(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

impl Default for ClaimGate {
    fn default() -> Self {
        Self::new()
    }
}

impl ClaimGate {
    /// A gate with nothing claimed or revoked (the all-zero word).
    pub fn new() -> Self {
        Self {
            word: AtomicU64::new(0),
        }
    }

    /// The consumer claims its next item (number [`claimed`](Self::claimed)).
    #[inline]
    pub fn claim(&self) -> Claim {
        // Acquire: a revocation's effects (the owner's bookkeeping) are not
        // read here; the CAS's atomicity is what decides. AcqRel on success
        // orders the claim before the item's work.
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            let (claimed, end) = split(w);
            let skip = before(claimed, end);
            let next = join(claimed.wrapping_add(1), end);
            match self
                .word
                .compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return if skip { Claim::Skip } else { Claim::Run },
                Err(now) => w = now,
            }
        }
    }

    /// The producer takes back the unclaimed items below `end` (the number
    /// of items it has queued). Returns the first item taken back, or
    /// `None` if the consumer has claimed every item below `end`.
    pub fn revoke(&self, end: u32) -> Option<u32> {
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            let (claimed, _) = split(w);
            if !before(claimed, end) {
                return None;
            }
            match self.word.compare_exchange_weak(
                w,
                join(claimed, end),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(claimed),
                Err(now) => w = now,
            }
        }
    }

    /// Items claimed (run or skipped) so far.
    pub fn claimed(&self) -> u32 {
        split(self.word.load(Ordering::Acquire)).0
    }

    /// Back to nothing claimed or revoked, for a new consumer. Only while
    /// no consumer uses the gate.
    pub fn reset(&self) {
        self.word.store(0, Ordering::Release);
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn wrapping_counters() {
        let g = ClaimGate {
            word: AtomicU64::new(join(u32::MAX - 1, u32::MAX - 1)),
        };
        assert_eq!(g.claim(), Claim::Run); // item MAX-1
        assert_eq!(g.revoke(2), Some(u32::MAX)); // items MAX, 0, 1
        assert_eq!(g.claim(), Claim::Skip);
        assert_eq!(g.claim(), Claim::Skip);
        assert_eq!(g.claim(), Claim::Skip);
        assert_eq!(g.claim(), Claim::Run); // item 2
        assert_eq!(g.claimed(), 3);
        assert_eq!(g.revoke(3), None);
        g.reset();
        assert_eq!(g.claimed(), 0);
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// A consumer claims three queued items while the producer revokes
    /// them: every item is run by the consumer or taken back by the
    /// producer, never both, never neither.
    #[test]
    fn each_item_runs_or_is_revoked_once() {
        loom::model(|| {
            let g = Arc::new(ClaimGate::new());
            let g2 = g.clone();
            let t = thread::spawn(move || {
                let mut ran = 0u32;
                for i in 0..3 {
                    if g2.claim() == Claim::Run {
                        ran |= 1 << i;
                    }
                }
                ran
            });
            let revoked_from = g.revoke(3);
            let ran = t.join().unwrap();
            let revoked = match revoked_from {
                Some(first) => (first..3).fold(0u32, |m, i| m | 1 << i),
                None => 0,
            };
            assert_eq!(ran & revoked, 0, "an item both ran and was revoked");
            assert_eq!(ran | revoked, 0b111, "an item neither ran nor was revoked");
            assert_eq!(g.claimed(), 3);
        });
    }
}
