//! The shared segment of a queue (peer table, then ring) and the
//! per-handle bookkeeping of which process counts a handle.
//!
//! ```text
//!  0                    P = Peers::memory_size(slots), rounded to 128
//!  +--------------------+------------------------------------------+
//!  | Peers region       | ring region (MpmcRing<T> or SpscRing<T>) |
//!  | pid|senders|recvs  | header (elem size, align, type tag, cap)  |
//!  +--------------------+------------------------------------------+
//! ```

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use multiproc_core::peers::{current_pid, Peers, Side};
use multiproc_core::region::Region;

use super::error::QueueError;
use crate::shm::SharedMemory;

/// Peer slots of a queue: processes that may hold its handles at once.
pub(crate) const DEFAULT_SLOTS: u64 = 64;

/// Where the ring starts, for a peer table of `peers_size` bytes.
pub(crate) fn ring_offset(peers_size: usize) -> usize {
    peers_size.next_multiple_of(128)
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
}

impl Segment {
    /// Maps a segment for a ring of `ring_size` bytes: anonymous, or named.
    pub(crate) fn create(ring_size: usize, name: Name<'_>) -> Result<Self, QueueError> {
        let psize = Peers::memory_size(DEFAULT_SLOTS).expect("valid slot count");
        let off = ring_offset(psize);
        let total = off + ring_size;
        let shm = match name {
            Name::Anonymous => SharedMemory::anonymous(total)?,
            Name::Unique => SharedMemory::create_unique(total)?,
            Name::Given(n) => SharedMemory::create(n, total)?,
        };
        // SAFETY: the region covers the mapping, which lives as long as the
        // Segment that holds both (see `region_at`).
        let peers = Peers::create(unsafe { region_at(&shm, 0) }, DEFAULT_SLOTS)?;
        Ok(Self {
            shm,
            peers,
            ring_off: off,
            creator: current_pid(),
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

    /// The segment's name, if it has one.
    pub(crate) fn name(&self) -> Option<&str> {
        self.shm.name()
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

/// In a child started by `Process` (fork): its own pid, then its parent's,
/// then the parent's own `Process` parent, ...; 0 past the known ones. The
/// own pid tells a valid lineage from a copy inherited by a plain `fork`.
static LINEAGE: [AtomicU32; LINEAGE_LEN] = [const { AtomicU32::new(0) }; LINEAGE_LEN];

/// Called in a child started by `Process` (fork), before its job runs.
pub(crate) fn after_fork_in_child(parent: u32) {
    let me = current_pid();
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

/// Whether `pid` is a `Process` fork ancestor of this process (`me`), whose
/// copy of a handle counted under it was forgotten when it started us.
fn handed_from(me: u32, pid: u32) -> bool {
    pid != 0
        && LINEAGE[0].load(Ordering::Relaxed) == me
        && LINEAGE[1..]
            .iter()
            .any(|a| a.load(Ordering::Relaxed) == pid)
}

/// Which process counts a handle: the pid it was last counted under.
#[derive(Debug)]
pub(crate) struct Local {
    pid: AtomicU32,
    side: Side,
}

impl Local {
    /// A handle counted (already) under this process.
    pub(crate) fn new(side: Side) -> Self {
        Self {
            pid: AtomicU32::new(current_pid()),
            side,
        }
    }

    /// Makes sure this process counts the handle; call before each use.
    #[inline]
    pub(crate) fn ensure(&self, peers: &Peers<'_>) {
        let me = current_pid();
        // Relaxed: only this process's threads touch this handle's field,
        // and the CAS below decides among them.
        let pid = self.pid.load(Ordering::Relaxed);
        if pid != me {
            self.adopt(peers, pid, me);
        }
    }

    #[cold]
    fn adopt(&self, peers: &Peers<'_>, pid: u32, me: u32) {
        if self
            .pid
            .compare_exchange(pid, me, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another thread adopted it
        }
        // Counted here first. If the table is full it stays uncounted here
        // (a later disconnection may then be reported early: documented),
        // and a handed count stays with the ancestor (while it lives).
        if peers.add(me, self.side, 1).is_ok() && handed_from(me, pid) {
            // Then the forgotten copy's count goes.
            peers.remove(pid, self.side, 1);
        }
    }

    /// The drop of a handle: uncounts it. Returns whether it was the last
    /// of its side counted anywhere (the caller then wakes the other side).
    pub(crate) fn release(&self, peers: &Peers<'_>) -> bool {
        let me = current_pid();
        let pid = self.pid.load(Ordering::Relaxed);
        if pid == me {
            peers.remove(me, self.side, 1);
        } else if handed_from(me, pid) {
            // Never touched here: its count is still the ancestor's, whose
            // copy was forgotten.
            peers.remove(pid, self.side, 1);
        } else {
            // A copy never used in this process: never counted here.
            return false;
        }
        !peers.any(self.side)
    }

    /// Counts one more handle of this side in this process (a clone).
    pub(crate) fn clone_in(&self, peers: &Peers<'_>) -> Self {
        self.ensure(peers);
        if let Err(e) = peers.add(current_pid(), self.side, 1) {
            panic!("cannot clone a queue handle: {e}");
        }
        Self::new(self.side)
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
const TOKEN_VERSION: u8 = 1;

/// What a token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: u8,
    pub(crate) side: Side,
    pub(crate) from_pid: u32,
    pub(crate) size: u64,
    pub(crate) align: u64,
    pub(crate) tag: u64,
    pub(crate) name: String,
}

impl Token {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(40 + self.name.len());
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
        v.extend_from_slice(&(self.name.len() as u32).to_le_bytes());
        v.extend_from_slice(self.name.as_bytes());
        v
    }

    /// Decodes a token from bytes another process sent: every field is
    /// checked (the encoding is canonical: a token that decodes encodes to
    /// the same bytes), and the pid is one a process can have.
    pub(crate) fn decode(b: &[u8]) -> Result<Self, QueueError> {
        let bad = |reason| QueueError::BadToken { reason };
        let Some((head, rest)) = b.split_first_chunk::<40>() else {
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
        if rest.len() as u64 != u64::from(u32_at(36)) {
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
        assert_eq!(reason(&with(4, &[2])), "token of another version");
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
        // `40 + len`).
        assert_eq!(
            reason(&with(36, &u32::MAX.to_le_bytes())),
            "truncated token"
        );
        let mut bad_utf8 = b.clone();
        *bad_utf8.last_mut().unwrap() = 0xff;
        assert_eq!(reason(&bad_utf8), "name is not UTF-8");
    }
}
