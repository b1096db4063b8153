//! The shared segment of a queue (peer table, then ring) and the
//! per-handle bookkeeping of which process counts a handle.
//!
//! ```text
//!  0                    P = Peers::memory_size(slots), rounded to 128
//!  +--------------------+------------------------------------------+
//!  | Peers region       | ring region (MpmcRing<T> or SpscRing<T>) |
//!  | slots: identity,   | header (elem size, align, type tag, cap)  |
//!  | counts             |                                          |
//!  +--------------------+------------------------------------------+
//! ```
//!
//! The peer table has `max_peers` slots (default
//! [`DEFAULT_SLOTS`](multiproc_core::peers::DEFAULT_SLOTS), 512: 8 KiB),
//! one per process holding handles. Where a handle cannot be counted (the
//! table is full of live processes) the caller gets
//! [`PeersError::Full`](multiproc_core::peers::PeersError): `Queue::channel`,
//! `try_clone`, tokens, and the fork hand-over ([`hand_over_to`], which
//! `Process::start` turns into `ProcessError::PeerTableFull`).

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use multiproc_core::identity::{self, Identity};
use multiproc_core::peers::{current_pid, Peers, PeersError, Side, MAX_SLOTS};
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

/// Where the handles dropped while [`hand_over_to`] runs move their count.
#[derive(Clone, Copy)]
enum HandOver {
    /// Not handing over: a drop uncounts the handle.
    None,
    /// To the child with this identity word.
    To(u64),
    /// The child already died: its copies are gone, just uncount.
    ChildDead,
}

thread_local! {
    /// While the parent drops the job it moved into a forked child: where
    /// the handles dropped then move their count.
    static HANDOVER_TO: Cell<HandOver> = const { Cell::new(HandOver::None) };
    /// The first hand-over that could not be counted in the child.
    static HANDOVER_FAILED: Cell<Option<PeersError>> = const { Cell::new(None) };
}

/// In a child started by `Process` (fork): `parent pid << 32 | own pid`.
static HANDED: AtomicU64 = AtomicU64::new(0);

/// Called in the parent right after `fork`: drops the job (the parent's
/// copy of everything moved into the child's closure) while moving each
/// queue handle's count to the child, so there is no instant when a handle
/// the child holds is counted nowhere.
///
/// # Errors
///
/// [`PeersError`] if some handle could not be counted in the child (its
/// table is full of live processes). That handle is then counted nowhere:
/// the caller must stop the child (`Process::start` kills it and returns
/// `ProcessError::PeerTableFull`), never let it run with an uncounted
/// handle.
///
/// A hand-over that forgets the job instead of dropping it must call
/// [`Local::hand_over`] for each handle (or drop them inside this
/// function's scope), with the same result.
pub(crate) fn hand_over_to<J>(child: u32, job: J) -> Result<(), PeersError> {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            HANDOVER_TO.with(|h| h.set(HandOver::None));
        }
    }
    // The child runs (or ran) now; not reaped, so the pid is still its.
    let to = match identity::of_pid(child) {
        Some(id) => HandOver::To(id.to_word()),
        None => HandOver::ChildDead,
    };
    HANDOVER_FAILED.with(|f| f.set(None));
    HANDOVER_TO.with(|h| h.set(to));
    let reset = Reset;
    drop(job);
    drop(reset);
    HANDOVER_FAILED.with(Cell::take).map_or(Ok(()), Err)
}

/// Called in a child started by `Process` (fork), before its job runs.
pub(crate) fn after_fork_in_child(parent: u32) {
    let me = current_pid();
    // Relaxed: read by this process's own threads, which start later.
    HANDED.store((u64::from(parent) << 32) | u64::from(me), Ordering::Relaxed);
}

/// The pid whose counts were handed to this process, if this process is a
/// `Process` fork child.
fn handed_from(me: u32) -> Option<u32> {
    let h = HANDED.load(Ordering::Relaxed);
    (h != 0 && h as u32 == me).then_some((h >> 32) as u32)
}

/// Which process counts a handle: the pid it was last counted under.
///
/// A pid is enough here: the handle is in this process's memory, so it
/// was counted by this process or by an ancestor it was forked from, and
/// no ancestor alive at the fork shares this process's pid.
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
        let handed =
            handed_from(me) == Some(pid) && peers.count(Identity::current(), self.side) > 0;
        if !handed {
            // A copy made by a plain fork (or reached otherwise): count it
            // here now. If the table is full it stays uncounted (a later
            // disconnection may then be reported early: documented; the
            // `Process` hand-over reports it instead).
            let _ = peers.add(Identity::current(), self.side, 1);
        }
    }

    /// The drop of a handle: uncounts it, or moves its count to a child
    /// being handed the handle. Returns whether it was the last of its side
    /// counted anywhere (the caller then wakes the other side).
    pub(crate) fn release(&self, peers: &Peers<'_>) -> bool {
        let me = current_pid();
        let pid = self.pid.load(Ordering::Relaxed);
        let counted_here = pid == me || handed_from(me) == Some(pid);
        if !counted_here {
            // A copy never used in this process: never counted here.
            return false;
        }
        match HANDOVER_TO.with(Cell::get) {
            HandOver::To(child) => {
                self.hand_over(peers, child);
                false
            }
            HandOver::ChildDead | HandOver::None => {
                peers.remove(Identity::current(), self.side, 1);
                !peers.any(self.side)
            }
        }
    }

    /// Moves this handle's count from this process to the forked `child`
    /// (an identity word) that holds its copy: counted there first, then
    /// uncounted here, so never counted nowhere. If the child cannot be
    /// counted, the count is dropped here anyway and the error is kept for
    /// [`hand_over_to`] to return (the child must then be stopped).
    pub(crate) fn hand_over(&self, peers: &Peers<'_>, child: u64) {
        let added = Identity::from_word(child)
            .ok_or(PeersError::Full { slots: 0 })
            .and_then(|id| peers.add(id, self.side, 1));
        if let Err(e) = added {
            HANDOVER_FAILED.with(|f| {
                if f.get().is_none() {
                    f.set(Some(e));
                }
            });
        }
        peers.remove(Identity::current(), self.side, 1);
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
