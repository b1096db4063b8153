//! Role words: which process holds a one-of-a-kind role (the producer or
//! consumer of a single-producer ring), whether it is still alive, and
//! whether it left cleanly.
//!
//! The borrow checker cannot see other processes, so a role that must be
//! unique is handed out through a word in shared memory:
//!
//! | word | meaning |
//! |---|---|
//! | `0` | never claimed |
//! | `pid` | held by process `pid` |
//! | `CLOSED_BIT \| pid` | released by `pid` (its handle was dropped) |
//! | `HANDED_BIT \| pid` | held by `pid`, handed on: waiting to be taken over |
//!
//! A role whose holder died without releasing it (killed with `SIGKILL`) can
//! be claimed again: [`RoleWord::claim`] checks the holder's liveness. Peers
//! waiting on the role holder use [`RoleWord::peer`] to tell "slow" from
//! "gone".
//!
//! A role can also move to another process without ever being free: its
//! holder marks it handed on under its own pid ([`RoleWord::hand_over`])
//! and gives its handle up; another process then
//! [`take_over`](RoleWord::take_over)s the role from that pid, at most once
//! (the mark tells a hand-over from a handle still in use, even within one
//! process). Meanwhile the role stays held, by the handing process, for as
//! long as it lives.

use core::fmt;

use crate::sync::{current_pid, pid_alive, AtomicU32, Ordering};

/// Set in a role word once its holder released it.
pub const CLOSED_BIT: u32 = 1 << 31;
/// Set in a role word while its holder hands it on (pids stay below 2^30).
pub const HANDED_BIT: u32 = 1 << 30;
const PID_MASK: u32 = !(CLOSED_BIT | HANDED_BIT);

/// A role word, living in shared memory.
#[repr(C)]
#[derive(Debug)]
pub struct RoleWord(AtomicU32);

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(RoleWord, u32);

// SAFETY: repr(C) over one 32-bit atomic: valid for every bit pattern, no
// pointers.
unsafe impl crate::region::ShmSafe for RoleWord {}

/// How a role was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// The role was free or released cleanly.
    Fresh,
    /// The previous holder (this pid) died without releasing it; whatever it
    /// was doing is abandoned (for example, an uncommitted slot).
    FromDead(u32),
}

/// The state of the peer holding a role, as seen from the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Nobody has claimed the role yet.
    NeverClaimed,
    /// Held by a live process.
    Alive(u32),
    /// Released by its holder.
    Closed(u32),
    /// Held by a process that no longer runs.
    Dead(u32),
}

impl Peer {
    /// Whether the peer is gone for good (released or dead).
    pub fn is_gone(self) -> bool {
        matches!(self, Peer::Closed(_) | Peer::Dead(_))
    }
}

/// Which claim of a role a handle holds: the word its
/// [`claim`](RoleWord::claim) or [`take_over`](RoleWord::take_over) wrote
/// ([`RoleWord::holder_here`] right after it). Only that holder can
/// [`release`](RoleWord::release) the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder(u32);

/// The role is held by another live process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleTaken {
    /// The holder's process id.
    pub pid: u32,
}

impl fmt::Display for RoleTaken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "role already held by live process {}", self.pid)
    }
}

impl core::error::Error for RoleTaken {}

impl Default for RoleWord {
    fn default() -> Self {
        Self::new()
    }
}

impl RoleWord {
    /// An unclaimed role.
    pub fn new() -> Self {
        Self(AtomicU32::new(0))
    }

    /// Claims the role for this process.
    ///
    /// # Errors
    ///
    /// [`RoleTaken`] if a live process holds it (this one included: a role
    /// is held at most once per process too).
    pub fn claim(&self) -> Result<Claimed, RoleTaken> {
        let me = current_pid() & PID_MASK;
        let mut w = self.0.load(Ordering::Acquire);
        loop {
            let claimed = if w == 0 || w & CLOSED_BIT != 0 {
                Claimed::Fresh
            } else {
                let pid = w & PID_MASK;
                if pid == me || pid_alive(pid) {
                    return Err(RoleTaken { pid });
                }
                Claimed::FromDead(pid)
            };
            // Acquire: pairs with the Release in `release`, so the new holder
            // sees everything the old one did with the role.
            match self
                .0
                .compare_exchange(w, me, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Ok(claimed),
                Err(now) => w = now,
            }
        }
    }

    /// The [`Holder`] that a successful [`claim`](Self::claim) or
    /// [`take_over`](Self::take_over) by this process makes: a role handle
    /// built right after one keeps it, and shows it to
    /// [`release`](Self::release).
    pub fn holder_here() -> Holder {
        Holder(current_pid() & PID_MASK)
    }

    /// Releases the role (its handle is dropped), if `holder` still holds
    /// it: one compare-and-swap from the holder's word to
    /// `CLOSED_BIT | pid` (this process's). Returns whether it did.
    ///
    /// A handle whose role was taken from under it (a claim that found the
    /// pid it named dead, as a process in another pid namespace does)
    /// releases nothing: the role stays with its new holder. A store would
    /// free it for a second claimer while the new holder still uses it.
    ///
    /// The holder is the handle's, not the calling process's: a handle that
    /// moved into a forked child (whose parent forgot its own copy) is
    /// released by that child, though the word names the parent.
    pub fn release(&self, holder: Holder) -> bool {
        let me = current_pid() & PID_MASK;
        // Release: pairs with the Acquire in `claim` and `peer`. Relaxed on
        // failure: nothing is read through a word this handle does not hold.
        let r = self.0.compare_exchange(
            holder.0,
            CLOSED_BIT | me,
            Ordering::Release,
            Ordering::Relaxed,
        );
        // A handle is built after its claim, and a handed-on handle is
        // forgotten, never dropped: the word was never 0 or "handed by
        // this holder" under a live handle.
        debug_assert!(
            r.is_ok() || (r != Err(0) && r != Err(HANDED_BIT | holder.0)),
            "role released by a handle that never held it: {r:?}"
        );
        r.is_ok()
    }

    /// Marks the role handed on by this process, without releasing it: the
    /// first half of a hand-over to another process (or thread), which
    /// completes it with [`take_over`](Self::take_over). Only the holder
    /// calls it (whoever has the role's handle, whatever pid the word
    /// names), and gives its handle up right after. Until taken over, the
    /// role counts as held by this process ([`peer`](Self::peer),
    /// [`claim`](Self::claim)).
    ///
    /// Returns this process's pid (for `take_over`), or `None` if the word
    /// is not held any more (a claimer took it, the pid it named looking
    /// dead).
    pub fn hand_over(&self) -> Option<u32> {
        let me = current_pid() & PID_MASK;
        // Relaxed: the CAS below checks the value; nothing is read through it.
        let w = self.0.load(Ordering::Relaxed);
        if w == 0 || w & (CLOSED_BIT | HANDED_BIT) != 0 {
            return None;
        }
        // Release: pairs with the Acquire in `take_over`, so the taker sees
        // everything this holder did with the role.
        self.0
            .compare_exchange(w, HANDED_BIT | me, Ordering::Release, Ordering::Relaxed)
            .ok()
            .map(|_| me)
    }

    /// Takes the role over from `holder` (a pid returned by
    /// [`hand_over`](Self::hand_over)), alive or dead. Succeeds only while
    /// the word says "handed on by `holder`": once per hand-over (a role
    /// already taken over, released, or never handed on is not taken).
    pub fn take_over(&self, holder: u32) -> bool {
        let me = current_pid() & PID_MASK;
        if holder == 0 || holder & !PID_MASK != 0 {
            return false;
        }
        // SeqCst (Acquire would do for the role itself: it pairs with the
        // Release in `hand_over`, so this taker sees everything the holder
        // did): takers of two roles that then look at each other's word
        // with `is_handed` (SeqCst) cannot both miss the other's take-over.
        self.0
            .compare_exchange(HANDED_BIT | holder, me, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// Whether the role was handed on and not taken over yet (one load).
    pub fn is_handed(&self) -> bool {
        // SeqCst: see `take_over`.
        self.0.load(Ordering::SeqCst) & HANDED_BIT != 0
    }

    /// The holder's state. Checks liveness (a few system calls) when the
    /// role is held: call it on slow paths only.
    pub fn peer(&self) -> Peer {
        let w = self.0.load(Ordering::Acquire);
        if w == 0 {
            Peer::NeverClaimed
        } else if w & CLOSED_BIT != 0 {
            Peer::Closed(w & PID_MASK)
        } else if pid_alive(w & PID_MASK) {
            Peer::Alive(w & PID_MASK)
        } else {
            Peer::Dead(w & PID_MASK)
        }
    }

    /// Whether the holder released the role (no liveness check: one load).
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.0.load(Ordering::Acquire) & CLOSED_BIT != 0
    }

    /// The raw word (for diagnostics).
    pub fn raw(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn claim_release_reclaim() {
        let r = RoleWord::new();
        assert_eq!(r.peer(), Peer::NeverClaimed);
        assert_eq!(r.claim(), Ok(Claimed::Fresh));
        let me = current_pid();
        assert_eq!(r.claim(), Err(RoleTaken { pid: me }));
        assert_eq!(r.peer(), Peer::Alive(me));
        assert!(r.release(RoleWord::holder_here()));
        assert!(r.is_closed());
        assert_eq!(r.peer(), Peer::Closed(me));
        assert!(r.peer().is_gone());
        assert_eq!(r.claim(), Ok(Claimed::Fresh));
    }

    #[test]
    fn hand_over_then_take_over_once() {
        let r = RoleWord::new();
        assert_eq!(r.hand_over(), None, "never claimed: nothing to hand");
        assert!(!r.take_over(0));
        r.claim().unwrap();
        let me = current_pid();
        assert!(!r.take_over(me), "not handed on yet");
        assert!(!r.is_handed());
        assert_eq!(r.hand_over(), Some(me));
        assert!(r.is_handed());
        assert_eq!(r.hand_over(), None, "handed on once");
        assert_eq!(r.peer(), Peer::Alive(me), "held while in transit");
        assert_eq!(r.claim(), Err(RoleTaken { pid: me }));
        assert!(!r.take_over(me + 1), "only from the pid it names");
        assert!(!r.take_over(CLOSED_BIT | me));
        assert!(r.take_over(me));
        assert!(!r.is_handed());
        assert!(!r.take_over(me), "a second take-over fails");
        assert_eq!(r.peer(), Peer::Alive(me));
        assert!(r.release(RoleWord::holder_here()));
        assert!(!r.take_over(me), "a released role is not taken");
        assert_eq!(r.hand_over(), None);
        // Handed on by a process that died: taken over still, or claimed.
        let dead = (1 << 22) + 3;
        r.0.store(HANDED_BIT | dead, Ordering::Relaxed);
        assert_eq!(r.peer(), Peer::Dead(dead));
        assert_eq!(r.claim(), Ok(Claimed::FromDead(dead)));
        assert!(!r.take_over(dead));
    }

    #[test]
    fn release_only_by_the_holder() {
        let r = RoleWord::new();
        r.claim().unwrap();
        let mine = RoleWord::holder_here();
        // The role is taken from under this handle (by a claimer that saw
        // its pid dead): the stale handle's release leaves it alone.
        let other = Holder(mine.0 ^ 1);
        r.0.store(other.0, Ordering::Relaxed);
        assert!(!r.release(mine));
        assert_eq!(r.raw(), other.0, "the new holder keeps the role");
        // A handle is released by its holder, whichever process drops it
        // (a handle moved into a forked child).
        assert!(r.release(other));
        assert_eq!(r.peer(), Peer::Closed(current_pid() & PID_MASK));
        assert!(!r.release(other), "released once");
    }

    #[test]
    fn dead_holder_is_reclaimed() {
        let r = RoleWord::new();
        // pid_max is at most 2^22: this pid cannot exist.
        r.0.store((1 << 22) + 5, Ordering::Relaxed);
        assert_eq!(r.peer(), Peer::Dead((1 << 22) + 5));
        assert_eq!(r.claim(), Ok(Claimed::FromDead((1 << 22) + 5)));
    }
}
