//! Which process counts a handle of a segment, and the fork hand-over.
//!
//! # Fork hand-over
//!
//! A handle moved into a `Process` fork child exists twice after the fork:
//! the child's copy, which it uses and drops, and the parent's, which the
//! parent forgets (no destructor of the job runs in the parent: see
//! `process::fork`). Its count stays under the parent's pid until the child
//! first touches the handle (a use, a clone, its drop): the child then
//! counts it and withdraws the parent's count, in that order, so there is no
//! instant when a handle the child holds is counted nowhere.
//!
//! The child tells such a handle by the pid it was last counted under: one of
//! its `Process` ancestors (the parent, or the parent's own fork parent if
//! the parent never touched it). A copy reached otherwise (a plain `fork`,
//! not `Process`) is counted afresh.
//!
//! | handle in the child | first touch in the child | its drop there |
//! |---|---|---|
//! | counted under an ancestor `a` | `add(me)`, then `remove(a)` | `remove(me)` |
//! | never touched here | - | `remove(a)` |
//! | plain `fork` copy | `add(me)` | `remove(me)` |

use std::sync::atomic::{fence, AtomicU64, Ordering};

use multiproc_core::identity::{fork_generation, Identity};
use multiproc_core::peers::{Peers, PeersError, Side};

/// How many `Process` fork ancestors a child remembers.
const LINEAGE_LEN: usize = 3;

/// In a child started by `Process` (fork): the identity words of its
/// parent, then of the parent's own `Process` parent, ...; 0 past the known
/// ones. Valid only in the process whose fork generation is
/// [`LINEAGE_GEN`]: a copy inherited by a plain `fork` is not.
static LINEAGE: [AtomicU64; LINEAGE_LEN] = [const { AtomicU64::new(0) }; LINEAGE_LEN];

/// The fork generation ([`fork_generation`]) of the process [`LINEAGE`]
/// belongs to; [`NO_LINEAGE`] in a process not started by `Process`.
///
/// A generation, not the process's own [`Identity`]: the generation changes
/// in every fork child (the core's atfork handler counts it) and costs one
/// load, where the identity would read `/proc` once in every child before
/// its job starts, on the path of every fork start.
static LINEAGE_GEN: AtomicU64 = AtomicU64::new(NO_LINEAGE);
const NO_LINEAGE: u64 = u64::MAX;

/// Called in a child started by `Process` (fork), before its job runs,
/// with its parent's identity word (taken in the parent before the fork).
pub(crate) fn after_fork_in_child(parent: u64) {
    // Relaxed throughout: read by this process's own threads, which start
    // later (thread creation orders it).
    let Some(generation) = fork_generation() else {
        // Forks are not counted here: no lineage can be told from a copy,
        // so none is kept (a handed count then stays with the ancestor
        // while it lives, as for a plain `fork`).
        LINEAGE_GEN.store(NO_LINEAGE, Ordering::Relaxed);
        return;
    };
    // The parent's lineage was its own if it was recorded one fork ago.
    let inherited = generation.checked_sub(1) == Some(LINEAGE_GEN.load(Ordering::Relaxed));
    for i in (1..LINEAGE_LEN).rev() {
        let up = if inherited {
            LINEAGE[i - 1].load(Ordering::Relaxed)
        } else {
            0
        };
        LINEAGE[i].store(up, Ordering::Relaxed);
    }
    LINEAGE[0].store(parent, Ordering::Relaxed);
    LINEAGE_GEN.store(generation, Ordering::Relaxed);
}

/// Whether `owner` (an identity word) is a `Process` fork ancestor of this
/// process, whose copy of a handle counted under it was forgotten when it
/// started us.
fn handed_from(owner: u64) -> bool {
    owner != 0
        && fork_generation().is_some_and(|g| g == LINEAGE_GEN.load(Ordering::Relaxed))
        && LINEAGE.iter().any(|a| a.load(Ordering::Relaxed) == owner)
}

/// Which process counts a handle: the identity word it was last counted
/// under.
///
/// The handle is in this process's memory, so it was counted by this
/// process or by an ancestor it was forked from; identities (pid plus start
/// time) also tell this process from an ancestor whose pid it reuses.
#[derive(Debug)]
pub(crate) struct Local {
    owner: AtomicU64,
    side: Side,
}

impl Local {
    /// A handle counted (already) under this process.
    pub(crate) fn new(side: Side) -> Self {
        Self {
            owner: AtomicU64::new(Identity::current().to_word()),
            side,
        }
    }

    /// Makes sure this process counts the handle; call before each use.
    #[inline]
    pub(crate) fn ensure(&self, peers: &Peers<'_>) {
        let me = Identity::current().to_word();
        // Relaxed: only this process's threads touch this handle's field,
        // and the CAS below decides among them.
        let owner = self.owner.load(Ordering::Relaxed);
        if owner != me {
            self.adopt(peers, owner, me);
        }
    }

    #[cold]
    fn adopt(&self, peers: &Peers<'_>, owner: u64, me: u64) {
        if self
            .owner
            .compare_exchange(owner, me, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another thread adopted it
        }
        let Some(me_id) = Identity::from_word(me) else {
            return;
        };
        // Counted here first, then the forgotten copy's count goes.
        match peers.add(me_id, self.side, 1) {
            Ok(()) => {
                if handed_from(owner) {
                    if let Some(a) = Identity::from_word(owner) {
                        peers.remove(a, self.side, 1);
                    }
                }
            }
            // The table is full: the handle stays counted where it was (a
            // handed count with the ancestor, while it lives: documented at
            // `Queue::max_peers`), and the next use tries again.
            Err(_) => self.owner.store(owner, Ordering::Relaxed),
        }
    }

    /// The drop of a handle: uncounts it. Returns whether it was the last
    /// of its side counted anywhere (the caller then wakes the other side).
    pub(crate) fn release(&self, peers: &Peers<'_>) -> bool {
        let me = Identity::current().to_word();
        let owner = self.owner.load(Ordering::Relaxed);
        if owner == me || handed_from(owner) {
            // Counted here; or never touched here, so its count is still
            // the ancestor's, whose copy was forgotten.
            if let Some(id) = Identity::from_word(owner) {
                peers.remove(id, self.side, 1);
            }
        } else {
            // A copy never used in this process: never counted here.
            return false;
        }
        // SeqCst fence between our uncount and the look at the others':
        // two last handles dropped at once are the store-buffering shape
        // (each uncounts its own slot, then reads the other's), where
        // release/acquire alone lets both reads miss the other's uncount
        // and neither wakes the other side (loom: core's
        // `peers::loom_handles::last_of_two_releases_is_seen`).
        fence(Ordering::SeqCst);
        !peers.any(self.side)
    }

    /// Counts one more handle of this side in this process (a clone).
    ///
    /// # Errors
    ///
    /// [`PeersError`] if the table cannot count it.
    pub(crate) fn try_clone_in(&self, peers: &Peers<'_>) -> Result<Self, PeersError> {
        self.ensure(peers);
        peers.add(Identity::current(), self.side, 1)?;
        Ok(Self::new(self.side))
    }

    /// As [`try_clone_in`](Self::try_clone_in), panicking on failure (for
    /// `Clone`, which cannot fail).
    pub(crate) fn clone_in(&self, peers: &Peers<'_>) -> Self {
        match self.try_clone_in(peers) {
            Ok(l) => l,
            Err(e) => panic!("cannot clone a queue handle: {e}"),
        }
    }
}
