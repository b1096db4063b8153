//! The shared segment of a queue (peer table, then ring) and the
//! per-handle bookkeeping of which process counts a handle.
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
//! "Fork hand-over" below).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use multiproc_core::identity::Identity;
use multiproc_core::peers::{current_pid, process_alive, Peers, PeersError, Side, MAX_SLOTS};
use multiproc_core::region::Region;

use super::error::QueueError;
use crate::shm::SharedMemory;

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

// ---------------------------------------------------------------------------
// Fork hand-over
// ---------------------------------------------------------------------------
//
// A handle moved into a `Process` fork child exists twice after the fork:
// the child's copy, which it uses and drops, and the parent's, which the
// parent forgets (no destructor of the job runs in the parent: see
// `process::fork`). Its count stays under the parent's pid until the child
// first touches the handle (a use, a clone, its drop): the child then
// counts it and withdraws the parent's count, in that order, so there is no
// instant when a handle the child holds is counted nowhere.
//
// The child tells such a handle by the pid it was last counted under: one of
// its `Process` ancestors (the parent, or the parent's own fork parent if
// the parent never touched it). A copy reached otherwise (a plain `fork`,
// not `Process`) is counted afresh.
//
// | handle in the child | first touch in the child | its drop there |
// |---|---|---|
// | counted under an ancestor `a` | `add(me)`, then `remove(a)` | `remove(me)` |
// | never touched here | - | `remove(a)` |
// | plain `fork` copy | `add(me)` | `remove(me)` |

/// How many `Process` fork ancestors a child remembers.
const LINEAGE_LEN: usize = 4;

/// In a child started by `Process` (fork): the identity words of itself,
/// then of its parent, then of the parent's own `Process` parent, ...; 0
/// past the known ones. The own identity tells a valid lineage from a copy
/// inherited by a plain `fork`.
static LINEAGE: [AtomicU64; LINEAGE_LEN] = [const { AtomicU64::new(0) }; LINEAGE_LEN];

/// Called in a child started by `Process` (fork), before its job runs,
/// with its parent's identity word (taken in the parent before the fork).
pub(crate) fn after_fork_in_child(parent: u64) {
    let me = Identity::current().to_word();
    // Relaxed throughout: read by this process's own threads, which start
    // later (thread creation orders it).
    let inherited = LINEAGE[0].load(Ordering::Relaxed) == parent;
    for i in (2..LINEAGE_LEN).rev() {
        let up = if inherited {
            LINEAGE[i - 1].load(Ordering::Relaxed)
        } else {
            0
        };
        LINEAGE[i].store(up, Ordering::Relaxed);
    }
    LINEAGE[1].store(parent, Ordering::Relaxed);
    LINEAGE[0].store(me, Ordering::Relaxed);
}

/// Whether `owner` (an identity word) is a `Process` fork ancestor of this
/// process (`me`), whose copy of a handle counted under it was forgotten
/// when it started us.
fn handed_from(me: u64, owner: u64) -> bool {
    owner != 0
        && LINEAGE[0].load(Ordering::Relaxed) == me
        && LINEAGE[1..]
            .iter()
            .any(|a| a.load(Ordering::Relaxed) == owner)
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
                if handed_from(me, owner) {
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
        if owner == me || handed_from(me, owner) {
            // Counted here; or never touched here, so its count is still
            // the ancestor's, whose copy was forgotten.
            if let Some(id) = Identity::from_word(owner) {
                peers.remove(id, self.side, 1);
            }
        } else {
            // A copy never used in this process: never counted here.
            return false;
        }
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

/// FNV-1a of `T`'s type name: the tag that tells apart two element types of
/// the same size (stable within one build of a program).
pub(crate) fn type_tag<T>() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::any::type_name::<T>().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h | 1
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

const TOKEN_MAGIC: &[u8; 4] = b"MPQT";
/// 2: the ticket word (MPMC tokens) after the tag.
const TOKEN_VERSION: u8 = 2;
/// Bytes before the name.
const TOKEN_HEAD: usize = 48;
/// The token kind of an MPMC queue (tickets: MPMC queues and pipes).
pub(crate) const KIND_MPMC: u8 = 1;
/// The token kind of a pipe end (also claimed once, through a ticket).
pub(crate) const KIND_PIPE: u8 = 3;

/// What a token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: u8,
    pub(crate) side: Side,
    pub(crate) from_pid: u32,
    pub(crate) size: u64,
    pub(crate) align: u64,
    pub(crate) tag: u64,
    /// MPMC tokens: the word of their entry in the segment's ticket table
    /// ([`Tickets`]); 0 for other kinds.
    pub(crate) ticket: u64,
    pub(crate) name: String,
}

impl Token {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(TOKEN_HEAD + self.name.len());
        v.extend_from_slice(TOKEN_MAGIC);
        v.push(TOKEN_VERSION);
        v.push(self.kind);
        v.push(match self.side {
            Side::Sender => 0,
            Side::Receiver => 1,
        });
        v.push(0);
        v.extend_from_slice(&self.from_pid.to_le_bytes());
        v.extend_from_slice(&self.size.to_le_bytes());
        v.extend_from_slice(&self.align.to_le_bytes());
        v.extend_from_slice(&self.tag.to_le_bytes());
        v.extend_from_slice(&self.ticket.to_le_bytes());
        v.extend_from_slice(&(self.name.len() as u32).to_le_bytes());
        v.extend_from_slice(self.name.as_bytes());
        v
    }

    /// Decodes a token from bytes another process sent: every field is
    /// checked (the encoding is canonical: a token that decodes encodes to
    /// the same bytes), and the pid is one a process can have.
    pub(crate) fn decode(b: &[u8]) -> Result<Self, QueueError> {
        let bad = |reason| QueueError::BadToken { reason };
        let Some((head, rest)) = b.split_first_chunk::<TOKEN_HEAD>() else {
            return Err(bad("not a queue token"));
        };
        if &head[..4] != TOKEN_MAGIC {
            return Err(bad("not a queue token"));
        }
        if head[4] != TOKEN_VERSION {
            return Err(bad("token of another version"));
        }
        let u32_at = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
        let side = match head[6] {
            0 => Side::Sender,
            1 => Side::Receiver,
            _ => return Err(bad("unknown side")),
        };
        if head[7] != 0 {
            return Err(bad("reserved byte set"));
        }
        let from_pid = u32_at(8);
        if from_pid == 0 || libc::pid_t::try_from(from_pid).is_err() {
            return Err(bad("pid out of range"));
        }
        // Compared as u64: no sum that could overflow a 32-bit usize.
        let ticket = u64_at(36);
        if ticket != 0 && head[5] != KIND_MPMC && head[5] != KIND_PIPE {
            return Err(bad("ticket on a token of another kind"));
        }
        if rest.len() as u64 != u64::from(u32_at(44)) {
            return Err(bad("truncated token"));
        }
        let name = std::str::from_utf8(rest)
            .map_err(|_| bad("name is not UTF-8"))?
            .to_owned();
        Ok(Token {
            kind: head[5],
            side,
            from_pid,
            size: u64_at(12),
            align: u64_at(20),
            tag: u64_at(28),
            ticket,
            name,
        })
    }

    /// Checks the token names a `T` queue of `kind`, `side`.
    pub(crate) fn check<T>(&self, kind: u8, side: Side) -> Result<(), QueueError> {
        let bad = |reason| Err(QueueError::BadToken { reason });
        if self.kind != kind {
            return bad("token of another kind of queue");
        }
        if self.side != side {
            return bad("token of the other side");
        }
        if self.size != std::mem::size_of::<T>() as u64
            || self.align != std::mem::align_of::<T>() as u64
            || self.tag != type_tag::<T>()
        {
            return bad("token of another element type");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        Token {
            kind: 2,
            side: Side::Receiver,
            from_pid: 4242,
            size: 8,
            align: 8,
            tag: type_tag::<u64>(),
            ticket: 0,
            name: "/psm_token".into(),
        }
    }

    fn reason(b: &[u8]) -> &'static str {
        match Token::decode(b) {
            Err(QueueError::BadToken { reason }) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tokens_round_trip_canonically() {
        let t = token();
        let b = t.encode();
        assert_eq!(Token::decode(&b).unwrap(), t);
        let empty = Token {
            name: String::new(),
            ..token()
        };
        assert_eq!(Token::decode(&empty.encode()).unwrap(), empty);
        // Every prefix, and one byte more, is refused.
        for cut in 0..b.len() {
            assert!(Token::decode(&b[..cut]).is_err(), "{cut}");
        }
        let mut longer = b.clone();
        longer.push(b'x');
        assert_eq!(reason(&longer), "truncated token");
    }

    #[test]
    fn tokens_with_bad_fields_are_refused() {
        let b = token().encode();
        let with = |i: usize, v: &[u8]| {
            let mut c = b.clone();
            c[i..i + v.len()].copy_from_slice(v);
            c
        };
        assert_eq!(reason(&with(0, b"MPQX")), "not a queue token");
        assert_eq!(reason(&with(4, &[1])), "token of another version");
        assert_eq!(reason(&with(6, &[2])), "unknown side");
        // The reserved byte: a token that decodes encodes to its bytes.
        assert_eq!(reason(&with(7, &[1])), "reserved byte set");
        // Pids no process has: 0, and above pid_t's range.
        assert_eq!(reason(&with(8, &0u32.to_le_bytes())), "pid out of range");
        assert_eq!(
            reason(&with(8, &(1u32 << 31).to_le_bytes())),
            "pid out of range"
        );
        assert!(Token::decode(&with(8, &(i32::MAX as u32).to_le_bytes())).is_ok());
        // A name length past the end (and one that would overflow a 32-bit
        // `48 + len`).
        assert_eq!(
            reason(&with(44, &u32::MAX.to_le_bytes())),
            "truncated token"
        );
        // A ticket only on MPMC tokens.
        assert_eq!(
            reason(&with(36, &7u64.to_le_bytes())),
            "ticket on a token of another kind"
        );
        let mpmc = Token {
            kind: KIND_MPMC,
            ticket: 7 << 32 | 9,
            ..token()
        };
        assert_eq!(Token::decode(&mpmc.encode()).unwrap(), mpmc);
        let mut bad_utf8 = b.clone();
        *bad_utf8.last_mut().unwrap() = 0xff;
        assert_eq!(reason(&bad_utf8), "name is not UTF-8");
    }
}
