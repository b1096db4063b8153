//! The shared segment under every queue, pipe and counted sync handle:
//! a peer table, a ticket table, then the ring; the per-handle bookkeeping
//! of which process counts a handle ([`handle`], with the fork hand-over);
//! and the tokens that hand a handle to another process ([`token`]).
//!
//! ```text
//!  0                    P = Peers::memory_size(slots), rounded to 128
//!  +--------------------+-----------------+------------------------------+
//!  | Peers region       | ticket table    | ring region (MpmcRing<T>,    |
//!  | slots: identity,   | 64 x u64        |  SpscRing<T> or byte rings)  |
//!  | counts             |                 |                              |
//!  +--------------------+-----------------+------------------------------+
//!                       P                 P + 512
//! ```
//!
//! The ticket table records the MPMC tokens made and not yet claimed (see
//! [`Tickets`]), so that each is claimed once.
//!
//! The peer table has `max_peers` slots (default
//! [`DEFAULT_SLOTS`](multiproc_core::peers::DEFAULT_SLOTS), 512: 8 KiB),
//! one per process holding handles. Where a handle cannot be counted (the
//! table is full of live processes) the caller gets
//! [`PeersError::Full`](multiproc_core::peers::PeersError): `Queue::channel`,
//! `try_clone`, tokens. A handle that a `Process` fork child inherited and
//! cannot count in its own name stays counted under its ancestor (see
//! [`handle`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use multiproc_core::peers::{current_pid, process_alive, Peers, Side, MAX_SLOTS};
use multiproc_core::region::Region;

use crate::shm::SharedMemory;

mod error;
pub(crate) mod handle;
pub(crate) mod token;

pub use error::QueueError;
pub(crate) use handle::{after_fork_in_child, Local};
pub(crate) use token::{Token, KIND_MPMC, KIND_PIPE};

/// Checks a `max_peers` value of a builder.
pub(crate) fn check_max_peers(max_peers: u64) -> Result<u64, QueueError> {
    if (1..=MAX_SLOTS).contains(&max_peers) {
        Ok(max_peers)
    } else {
        Err(QueueError::InvalidMaxPeers { max_peers })
    }
}

/// Slots of the ticket table: MPMC tokens pending at once per queue.
pub(crate) const TICKETS: usize = 64;

/// Where the ticket table starts, for a peer table of `peers_size` bytes.
fn tickets_offset(peers_size: usize) -> usize {
    peers_size.next_multiple_of(128)
}

/// Where the ring starts, for a peer table of `peers_size` bytes.
pub(crate) fn ring_offset(peers_size: usize) -> usize {
    tickets_offset(peers_size) + TICKETS * 8
}

/// A mapped queue segment and the peer table at its start.
#[derive(Debug)]
pub(crate) struct Segment {
    shm: SharedMemory,
    /// Valid while `shm` is mapped, i.e. for the life of `self`: the
    /// `'static` is a lie confined to this module's users, who keep the
    /// view inside the struct that owns the segment.
    pub(crate) peers: Peers<'static>,
    ring_off: usize,
    /// The process that created the segment (0 if opened).
    creator: u32,
    /// Made by [`Segment::create`]: its ring area is still as the kernel
    /// zero-filled it, until the ring is created there.
    fresh: bool,
    /// Per side (sender, receiver): the slot (index + 1) of the holder
    /// found alive last time, asked first by [`side_alive`](Self::side_alive).
    witness: [AtomicU64; 2],
}

impl Segment {
    /// Maps a segment for a ring of `ring_size` bytes behind a peer table
    /// of `slots` slots: anonymous, or named.
    pub(crate) fn create(ring_size: usize, name: Name<'_>, slots: u64) -> Result<Self, QueueError> {
        let psize = Peers::memory_size(check_max_peers(slots)?).expect("valid slot count");
        let off = ring_offset(psize);
        let total = off + ring_size;
        let shm = match name {
            Name::Anonymous => SharedMemory::anonymous(total)?,
            Name::Unique => SharedMemory::create_unique(total)?,
            Name::Given(n) => SharedMemory::create(n, total)?,
        };
        // SAFETY: the region covers the mapping, which lives as long as the
        // Segment that holds both (see `region_at`).
        let peers = Peers::create(unsafe { region_at(&shm, 0) }, slots)?;
        Ok(Self {
            shm,
            peers,
            ring_off: off,
            creator: current_pid(),
            fresh: true,
            witness: Default::default(),
        })
    }

    /// Opens the named segment of an existing queue.
    pub(crate) fn open(name: &str) -> Result<Self, QueueError> {
        let shm = SharedMemory::open(name)?;
        // SAFETY: as in `create`.
        let peers = Peers::attach(unsafe { region_at(&shm, 0) })?;
        let off = ring_offset(peers.total_size() as usize);
        if off >= shm.len() {
            return Err(QueueError::BadToken {
                reason: "segment too small for a queue",
            });
        }
        Ok(Self {
            shm,
            peers,
            ring_off: off,
            creator: 0,
            fresh: false,
            witness: Default::default(),
        })
    }

    /// If this process made the named segment (so that dropping it here
    /// would unlink the name): keeps the name after the drop, and returns
    /// `true`. Whoever gets the segment's last handle then unlinks it.
    pub(crate) fn leave_name(&mut self) -> bool {
        if self.creator != current_pid() || !self.shm.is_owner() || self.name().is_none() {
            return false;
        }
        self.shm.set_persist(true);
        true
    }

    /// The ring's region.
    ///
    /// # Safety
    ///
    /// The region (and every view built on it) must not outlive `self`.
    pub(crate) unsafe fn ring_region(&self) -> Region<'static> {
        // SAFETY: forwarded to the caller.
        unsafe { region_at(&self.shm, self.ring_off) }
    }

    /// The ring's region, marked as zero-filled when this process has just
    /// created the segment (the rings then write their header and body
    /// only: see [`Region::assume_zeroed`]); as
    /// [`ring_region`](Self::ring_region) for an opened one.
    ///
    /// # Safety
    ///
    /// As [`ring_region`](Self::ring_region); and called by the creator to
    /// create the ring(s), before anything else is written in the ring area.
    pub(crate) unsafe fn fresh_ring_region(&self) -> Region<'static> {
        // SAFETY: forwarded to the caller.
        let region = unsafe { self.ring_region() };
        if !self.fresh {
            return region;
        }
        // SAFETY: the segment was created by `create` (a new shm object, or
        // anonymous memory): the kernel zero-filled it, and only the peer
        // table before `ring_off` has been written since (the caller's
        // promise). Another process that opened the name and wrote into the
        // ring area meanwhile would only make the ring start in a state of
        // its choosing, which the rings tolerate (untrusted memory).
        unsafe { region.assume_zeroed() }
    }

    /// Whether some live process holds a handle of `side`: counts first
    /// (no system call when the count is 0), then asks the kernel about one
    /// holder, the one found alive last time (see
    /// [`Peers::any_alive`]). The question a blocked call asks once per
    /// liveness slice.
    pub(crate) fn side_alive(&self, side: Side) -> bool {
        let w = &self.witness[usize::from(side == Side::Receiver)];
        // Relaxed: a hint; `any_alive` re-checks the slot it names.
        let mut hint = w.load(Ordering::Relaxed);
        let alive = self.peers.any_alive(side, &mut hint);
        w.store(hint, Ordering::Relaxed);
        alive
    }

    /// The segment's name, if it has one.
    pub(crate) fn name(&self) -> Option<&str> {
        self.shm.name()
    }

    /// The ticket table of the segment's pending MPMC tokens.
    pub(crate) fn tickets(&self) -> Tickets<'_> {
        let off = tickets_offset(self.peers.total_size() as usize);
        assert!(off + TICKETS * 8 <= self.ring_off && self.ring_off <= self.shm.len());
        // SAFETY: the table lies inside the mapping (checked: it ends at or
        // before the ring, which starts inside it), 128-aligned (the mapping
        // is page-aligned), and lives as long as `&self`; it is reached only
        // through atomics, valid for every bit pattern.
        let words = unsafe { &*self.shm.as_ptr().add(off).cast::<[AtomicU64; TICKETS]>() };
        Tickets { words }
    }
}

/// The table of MPMC tokens made and not claimed yet: one `u64` per pending
/// token, `0` for a free entry.
///
/// ```text
///   63          32 31            0
///  +--------------+---------------+
///  |  maker pid   |  nonce (!= 0) |     the token carries this word
///  +--------------+---------------+
/// ```
///
/// [`issue`](Self::issue) stores a fresh word in a free entry (CAS from 0);
/// [`redeem`](Self::redeem) CASes the token's word back to 0, which
/// succeeds once: a second claim of the same token finds the word gone.
/// The nonce (random per process, then counted) keeps a token of an
/// earlier, already claimed transfer from matching a later one in the same
/// entry. When every entry is taken, entries of dead makers are freed
/// (their tokens become void: a claim fails as already claimed).
#[derive(Clone, Copy)]
pub(crate) struct Tickets<'a> {
    words: &'a [AtomicU64; TICKETS],
}

impl Tickets<'_> {
    /// Records a new pending token of process `pid`; its word, or `None`
    /// if every entry is held by a live process.
    pub(crate) fn issue(&self, pid: u32) -> Option<u64> {
        let word = u64::from(pid) << 32 | u64::from(next_nonce());
        for reclaim in [false, true] {
            for w in self.words {
                // Relaxed: a guess the CAS confirms.
                let cur = w.load(Ordering::Relaxed);
                let free = cur == 0 || (reclaim && !process_alive((cur >> 32) as u32));
                // AcqRel: orders the entry with the peer-table count made
                // just before (Release), for the claimer (Acquire in redeem).
                if free
                    && w.compare_exchange(cur, word, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    return Some(word);
                }
            }
        }
        None
    }

    /// Withdraws the pending token `word`: `true` once, for the first
    /// claim; `false` if it was claimed (or voided) already.
    pub(crate) fn redeem(&self, word: u64) -> bool {
        if word == 0 {
            return false;
        }
        self.words.iter().any(|w| {
            // AcqRel: pairs with the CAS in `issue`; a single winner.
            w.compare_exchange(word, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
    }
}

/// A nonce for a ticket word: random per process (so a pid reused by
/// another process makes other words), then counted; never 0.
fn next_nonce() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Relaxed: only uniqueness within this process matters.
    let mut n = NEXT.load(Ordering::Relaxed);
    if n == 0 {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(current_pid());
        let seed = (h.finish() as u32) | 1;
        n = match NEXT.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => seed,
            Err(now) => now,
        };
    }
    loop {
        let next = n.wrapping_add(1).max(1);
        match NEXT.compare_exchange_weak(n, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return n,
            Err(now) => n = now,
        }
    }
}

/// How a queue's segment is named.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Name<'a> {
    Anonymous,
    Unique,
    Given(&'a str),
}

/// The part of `shm` from `off` on, as a `'static` region.
///
/// # Safety
///
/// The caller keeps `shm` mapped for as long as the region or any view
/// built on it is used.
unsafe fn region_at(shm: &SharedMemory, off: usize) -> Region<'static> {
    assert!(off < shm.len());
    // SAFETY: off < len, so the pointer is inside the mapping and non-null;
    // the caller guarantees the lifetime; this process reaches the memory
    // only through core structures (SharedMemory::region's contract).
    unsafe {
        Region::from_raw_parts(
            NonNull::new_unchecked(shm.as_ptr().add(off)),
            shm.len() - off,
        )
    }
}

/// FNV-1a of `T`'s type name: the tag that tells apart two element types of
/// the same size (stable within one build of a program).
pub(crate) fn type_tag<T>() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::any::type_name::<T>().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h | 1
}
