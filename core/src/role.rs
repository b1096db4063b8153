//! Roles: which process holds a one-of-a-kind role (the producer or
//! consumer of a single-producer ring), whether it is still alive, and
//! whether it left cleanly.
//!
//! The borrow checker cannot see other processes, so a ring hands each
//! unique role out once, through a word in its shared memory that names
//! the holder by [identity](crate::identity) (pid plus start time). A role
//! whose holder died without releasing it (killed with `SIGKILL`) can be
//! claimed again ([`Claimed::FromDead`]); a process that reuses a dead
//! holder's pid does not keep its role held. The other side tells a slow
//! holder from one that is gone by its [`Peer`] state. A claim that finds
//! the role held by a live process fails with [`RoleTaken`]. The pids these
//! types report are for display; decisions use the whole identity.
//!
//! A role can also move to another process without ever being free: its
//! holder hands it over, and another process takes it over, at most once;
//! meanwhile the role stays held by the handing process, for as long as it
//! lives.
//!
//! The role word itself (`RoleWord`) is internal to the crate: its handles
//! are the only holders of a claim, so only they release or hand it on.
//!
//! # The role word
//!
//! A 64-bit word holding an identity word (bits 0 to 61) and two marks:
//!
//! | word | meaning |
//! |---|---|
//! | `0` | never claimed |
//! | `id` | held by process `id` |
//! | `CLOSED_BIT \| id` | released by `id` (its handle was dropped) |
//! | `HANDED_BIT \| id` | held by `id`, handed on: waiting to be taken over |

use core::fmt;

use crate::identity::{Identity, IDENTITY_MASK};
use crate::sync::{current_identity, identity_alive, AtomicU64, Ordering};

/// Set in a role word once its holder released it.
pub(crate) const CLOSED_BIT: u64 = 1 << 63;
/// Set in a role word while its holder hands it on.
pub(crate) const HANDED_BIT: u64 = 1 << 62;
const ID_MASK: u64 = IDENTITY_MASK;

// The marks sit in the two bits an identity word leaves free.
static_assertions::const_assert_eq!((CLOSED_BIT | HANDED_BIT) & IDENTITY_MASK, 0);

/// A role word, living in shared memory.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RoleWord(AtomicU64);

#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_size!(RoleWord, u64);
#[cfg(not(multiproc_loom))]
static_assertions::assert_eq_align!(RoleWord, u64);

// SAFETY: repr(C) over one 64-bit atomic: valid for every bit pattern, no
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
    /// Held by a live process (this pid).
    Alive(u32),
    /// Released by its holder.
    Closed(u32),
    /// Held by a process that no longer runs (its pid may run another
    /// process by now).
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
pub(crate) struct Holder(u64);

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

/// The pid of the identity in a role word (0 for none).
fn pid_of(w: u64) -> u32 {
    Identity::from_word(w).map_or(0, Identity::pid)
}

impl RoleWord {
    /// An unclaimed role.
    pub(crate) fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Claims the role for this process.
    ///
    /// # Errors
    ///
    /// [`RoleTaken`] if a live process holds it (this one included: a role
    /// is held at most once per process too).
    pub(crate) fn claim(&self) -> Result<Claimed, RoleTaken> {
        let me = current_identity();
        let mut w = self.0.load(Ordering::Acquire);
        loop {
            let claimed = if w & ID_MASK == 0 || w & CLOSED_BIT != 0 {
                Claimed::Fresh
            } else {
                let id = w & ID_MASK;
                if id == me || identity_alive(id) {
                    return Err(RoleTaken { pid: pid_of(id) });
                }
                Claimed::FromDead(pid_of(id))
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
    pub(crate) fn holder_here() -> Holder {
        Holder(current_identity())
    }

    /// Releases the role (its handle is dropped), if `holder` still holds
    /// it: one compare-and-swap from exactly the holder's identity word to
    /// `CLOSED_BIT |` this process's identity. Returns whether it did.
    ///
    /// A handle whose role was taken from under it (a claim that found its
    /// holder dead) releases nothing: the role stays with its new holder. A
    /// store would free it for a second claimer while the new holder still
    /// uses it.
    ///
    /// The holder is the handle's, not the calling process's: a handle that
    /// moved into a forked child (whose parent forgot its own copy) is
    /// released by that child, though the word names the parent.
    pub(crate) fn release(&self, holder: Holder) -> bool {
        let me = current_identity();
        // Release: pairs with the Acquire in `claim` and `peer`. Relaxed on
        // failure: nothing is read through a word this handle does not hold.
        let r = self.0.compare_exchange(
            holder.0,
            CLOSED_BIT | me,
            Ordering::Release,
            Ordering::Relaxed,
        );
        // No assertion on what was found instead: the word is shared memory
        // that another process may have scribbled on (a handle is built
        // after its claim and a handed-on handle is forgotten, so a sane
        // word is never 0 or "handed by this holder" here, but garbage is
        // allowed to be anything, and changes nothing).
        r.is_ok()
    }

    /// Marks the role handed on by this process, without releasing it: the
    /// first half of a hand-over to another process (or thread), which
    /// completes it with [`take_over`](Self::take_over). Only the holder
    /// calls it (whoever has the role's handle, whatever identity the word
    /// names), and gives its handle up right after. Until taken over, the
    /// role counts as held by this process ([`peer`](Self::peer),
    /// [`claim`](Self::claim)).
    ///
    /// Returns this process's pid (for `take_over`), or `None` if the word
    /// is not held any more (a claimer took it, the identity it named
    /// looking dead).
    pub(crate) fn hand_over(&self) -> Option<u32> {
        let me = current_identity();
        // Relaxed: the CAS below checks the value; nothing is read through it.
        let w = self.0.load(Ordering::Relaxed);
        if w & ID_MASK == 0 || w & (CLOSED_BIT | HANDED_BIT) != 0 {
            return None;
        }
        // Release: pairs with the Acquire in `take_over`, so the taker sees
        // everything this holder did with the role.
        self.0
            .compare_exchange(w, HANDED_BIT | me, Ordering::Release, Ordering::Relaxed)
            .ok()
            .map(|_| pid_of(me))
    }

    /// Takes the role over from `holder` (a pid returned by
    /// [`hand_over`](Self::hand_over)), alive or dead. Succeeds only while
    /// the word says "handed on by `holder`": once per hand-over (a role
    /// already taken over, released, or never handed on is not taken).
    pub(crate) fn take_over(&self, holder: u32) -> bool {
        let me = current_identity();
        if holder == 0 {
            return false;
        }
        // Relaxed: the CAS below decides, from this exact value.
        let mut w = self.0.load(Ordering::Relaxed);
        loop {
            if w & (CLOSED_BIT | HANDED_BIT) != HANDED_BIT || pid_of(w) != holder {
                return false;
            }
            // SeqCst (Acquire would do for the role itself: it pairs with
            // the Release in `hand_over`, so this taker sees everything the
            // holder did): takers of two roles that then look at each
            // other's word with `is_handed` (SeqCst) cannot both miss the
            // other's take-over.
            match self
                .0
                .compare_exchange(w, me, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => w = now,
            }
        }
    }

    /// Whether the role was handed on and not taken over yet (one load).
    pub(crate) fn is_handed(&self) -> bool {
        // SeqCst: see `take_over`.
        self.0.load(Ordering::SeqCst) & HANDED_BIT != 0
    }

    /// The holder's state. Checks liveness (a read of `/proc/<pid>/stat`)
    /// when the role is held: call it on slow paths only.
    pub(crate) fn peer(&self) -> Peer {
        let w = self.0.load(Ordering::Acquire);
        let id = w & ID_MASK;
        if id == 0 {
            Peer::NeverClaimed
        } else if w & CLOSED_BIT != 0 {
            Peer::Closed(pid_of(id))
        } else if identity_alive(id) {
            Peer::Alive(pid_of(id))
        } else {
            Peer::Dead(pid_of(id))
        }
    }

    /// Whether the holder released the role (no liveness check: one load).
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.0.load(Ordering::Acquire) & CLOSED_BIT != 0
    }

    /// The raw word (for diagnostics): an identity word and the marks.
    pub(crate) fn raw(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// An identity word of a process that cannot run: the pid with a start
/// time of 5 clock ticks after boot, long gone on any machine that runs
/// tests (for tests that make a holder look dead).
#[cfg(all(test, not(multiproc_loom)))]
pub(crate) fn dead_identity(pid: u32) -> u64 {
    Identity::new(pid, Some(5))
        .expect("a pid below 2^22")
        .to_word()
}

#[cfg(all(test, not(multiproc_loom)))]
impl RoleWord {
    /// Tests: stores `word` as is (an identity word and marks).
    pub(crate) fn force(&self, word: u64) {
        self.0.store(word, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    use super::*;

    fn me() -> u32 {
        Identity::current().pid()
    }

    /// An identity no process has: a pid above Linux's pid_max limit.
    fn nobody() -> u64 {
        dead_identity((1 << 22) - 3)
    }

    /// This process's pid with another start time: the process that had
    /// this pid before (or after) us.
    fn reused() -> u64 {
        let me = Identity::current();
        Identity::new(me.pid(), Some(me.start_ticks().unwrap() + 1))
            .unwrap()
            .to_word()
    }

    #[test]
    fn claim_release_reclaim() {
        let r = RoleWord::new();
        assert_eq!(r.peer(), Peer::NeverClaimed);
        assert_eq!(r.claim(), Ok(Claimed::Fresh));
        let me = me();
        assert_eq!(r.raw(), Identity::current().to_word());
        assert_eq!(r.claim(), Err(RoleTaken { pid: me }));
        assert_eq!(r.peer(), Peer::Alive(me));
        assert!(r.release(RoleWord::holder_here()));
        assert!(r.is_closed());
        assert_eq!(r.peer(), Peer::Closed(me));
        assert!(r.peer().is_gone());
        assert_eq!(r.claim(), Ok(Claimed::Fresh));
    }

    #[test]
    fn only_the_holder_releases() {
        let r = RoleWord::new();
        // Held by another (here: dead) process: our release changes nothing.
        r.0.store(nobody(), Ordering::Relaxed);
        assert!(!r.release(RoleWord::holder_here()));
        assert_eq!(r.raw(), nobody());
        // Held by this pid with another start time (a reused pid): ours is
        // not the holder's identity either.
        r.0.store(reused(), Ordering::Relaxed);
        assert!(!r.release(RoleWord::holder_here()));
        assert!(!r.is_closed());
    }

    #[test]
    fn hand_over_then_take_over_once() {
        let r = RoleWord::new();
        assert_eq!(r.hand_over(), None, "never claimed: nothing to hand");
        assert!(!r.take_over(0));
        r.claim().unwrap();
        let me = me();
        assert!(!r.take_over(me), "not handed on yet");
        assert!(!r.is_handed());
        assert_eq!(r.hand_over(), Some(me));
        assert!(r.is_handed());
        assert_eq!(r.hand_over(), None, "handed on once");
        assert_eq!(r.peer(), Peer::Alive(me), "held while in transit");
        assert_eq!(r.claim(), Err(RoleTaken { pid: me }));
        assert!(!r.take_over(me + 1), "only from the pid it names");
        assert!(r.take_over(me));
        assert!(!r.is_handed());
        assert!(!r.take_over(me), "a second take-over fails");
        assert_eq!(r.peer(), Peer::Alive(me));
        assert!(r.release(RoleWord::holder_here()));
        assert!(!r.take_over(me), "a released role is not taken");
        assert_eq!(r.hand_over(), None);
        // Handed on by a process that died: taken over still, or claimed.
        let dead = nobody();
        let dead_pid = pid_of(dead);
        r.0.store(HANDED_BIT | dead, Ordering::Relaxed);
        assert_eq!(r.peer(), Peer::Dead(dead_pid));
        assert_eq!(r.claim(), Ok(Claimed::FromDead(dead_pid)));
        assert!(!r.take_over(dead_pid));
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
        assert_eq!(r.peer(), Peer::Closed(me()));
        assert!(!r.release(other), "released once");
    }

    #[test]
    fn dead_holder_is_reclaimed() {
        let r = RoleWord::new();
        r.0.store(nobody(), Ordering::Relaxed);
        assert_eq!(r.peer(), Peer::Dead(pid_of(nobody())));
        assert_eq!(r.claim(), Ok(Claimed::FromDead(pid_of(nobody()))));
    }

    /// A holder whose pid now runs another process (this one) is dead: its
    /// role is claimed again, not reported taken by "a live process".
    #[test]
    fn a_reused_pid_does_not_keep_a_role() {
        let r = RoleWord::new();
        r.0.store(reused(), Ordering::Relaxed);
        assert_eq!(r.peer(), Peer::Dead(me()));
        assert_eq!(r.claim(), Ok(Claimed::FromDead(me())));
        assert_eq!(r.peer(), Peer::Alive(me()));
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_claim;
