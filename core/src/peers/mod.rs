//! A peer table: which processes hold how many handles of each side of a
//! queue (and, for a `JoinableQueue`, how many tasks each took and did not
//! mark done), so that "every sender is gone" can be decided even when a
//! sender died by `SIGKILL` without dropping its handles.
//!
//! The std layer's queues and pipes put one [`Peers`] region next to their
//! rings, sized when they are made (`Queue::max_peers`). Each process that
//! holds handles owns (at least) one slot of two words:
//!
//! ```text
//!  owner:  the owner's identity word (crate::identity): pid plus start
//!          time, so a reused pid never passes for its earlier owner; 0 = free
//!
//!  state:   63  62          48 47         32 31         16 15          0
//!          +---+--------------+-------------+-------------+-------------+
//!          | V |  generation  |    tasks    |   senders   |  receivers  |
//!          +---+--------------+-------------+-------------+-------------+
//!          V (VACANT): the counts are not in use (free slot, or a slot
//!          being claimed or released); generation: bumped by every claim
//! ```
//!
//! A slot is 16 bytes: the default table of 512 slots
//! ([`DEFAULT_SLOTS`]) takes 8 KiB plus a 256-byte header and body.
//!
//! # The slot state machine
//!
//! | state | owner | state word | who leaves it, how |
//! |---|---|---|---|
//! | FREE | 0 | V, gen g | a claimer P: CAS owner 0 -> P (CLAIMED) |
//! | CLAIMED | P | V, gen g | P: CAS state to gen g+1 with its first counts (HELD); P after a release: store owner 0 (FREE); anyone, once P is dead: CAS owner P -> 0 (FREE) |
//! | HELD | P | gen g, counts != 0 | P: CAS counts up or down; when they would reach 0, CAS state to V (CLAIMED) instead; anyone, once P is dead: CAS state to V (CLAIMED), its tasks counted lost |
//!
//! Every change of the owner word is bracketed by changes of the state
//! word: a slot is released (state set to V) before its owner word is
//! cleared, and claimed (owner set) before its state gets the next
//! generation. So a thread that loads the **state word first (Acquire),
//! then the owner word**, and then changes the state with a CAS from the
//! value it loaded, succeeds only if the slot is still held by the owner it
//! read: had the slot been released and claimed again in between (by
//! another process, or by this one from another thread), the state word
//! would have moved to V and then to a new generation, and the CAS fails.
//! The Acquire load of the state pairs with the Release of the claimer's
//! CAS to the new generation, so a reader that sees a new claim's counts
//! also sees its owner word. (The generation has 15 bits: a thread
//! stalled between its load and its CAS while one slot is released and
//! claimed 32768 times could be fooled; nothing else can.)
//!
//! A process killed at any instant leaves each of its slots in one of the
//! three states, each of which a live process can leave alone or undo:
//!
//! - killed between the claim and the first counts: CLAIMED by a dead
//!   owner, freed by the next claimer that scans for room;
//! - killed between the release of the counts and the clearing of the
//!   owner: the same;
//! - killed while HELD: the counts stay until a liveness scan or a
//!   claimer finds the owner dead and releases them. Its tasks are added
//!   to the body's lost count first (see below).
//!
//! A reclaimer killed between its two steps leaves a CLAIMED slot of a
//! dead owner: the next one frees it. Two reclaimers race through CASes,
//! and a dead owner's identity never comes back, so the loser's CAS fails.
//! Two threads of one process may claim two slots; counts are summed per
//! identity, so that is harmless.
//!
//! # Liveness, and what it costs
//!
//! [`live`](Peers::live) asks the kernel about every holder (one read of
//! `/proc/<pid>/stat` each, 3 system calls). A blocked call only needs to
//! know whether *some* holder of the other side lives:
//! [`any_alive`](Peers::any_alive) sums the side's counts first (shared
//! memory only: a side whose count is 0 is gone, no system call), then
//! asks the kernel about one holder, the *witness* that answered last
//! time; only when the witness died does it scan the others. An idle
//! receiver with 64 live senders therefore reads one `/proc` file per
//! check instead of 64.
//!
//! # Tasks (`JoinableQueue`)
//!
//! The body counts `unfinished` tasks (put and not marked done), and
//! `lost` ones: tasks that a process took ([`task_taken`](Peers::task_taken)
//! adds one to the tasks field of its slot) and had not marked done when
//! it died. [`wait_tasks`](Peers::wait_tasks) (`join`) returns once no task
//! is unfinished, and returns [`TasksError::Lost`] once a holder of tasks
//! is found dead, instead of waiting forever. [`task_done`](Peers::task_done)
//! lowers `unfinished`, and then, in this order, the caller's own tasks
//! field if non-zero, else the lost count if non-zero (acknowledging a lost
//! task), else another live process's tasks field (if that leaves it with
//! some count: Python allows `task_done` in another process than `get`;
//! then which process is blamed for a later loss is approximate). Lowering
//! `unfinished` comes first, so a process killed inside `task_done` can
//! make `join` report a task lost that was done, never return early.

use core::fmt;
use core::time::Duration;

use crate::identity::Identity;
use crate::region::{AttachError, ElemType, InitError, Kind, Parts, Region, ShmSafe, Spec};
use crate::sync::{identity_alive, AtomicU64, Ordering};
use crate::time::Deadline;
use crate::wait::{EventCount, Spin, RECHECK};

/// The largest number of slots a table may have.
pub const MAX_SLOTS: u64 = 1 << 16;

/// The slot count the std layer gives a queue or pipe unless told
/// otherwise: a `Pool` on a 128-core machine (128 workers and their owner)
/// with room for four times that many holders (replacement workers whose
/// predecessors are not yet reaped, helpers, tokens in flight).
pub const DEFAULT_SLOTS: u64 = 512;

const COUNT_MASK: u64 = 0xffff;
const TASK_SHIFT: u32 = 32;
const GEN_SHIFT: u32 = 48;
const GEN_MASK: u64 = 0x7fff;
const VACANT: u64 = 1 << 63;
/// Every count of a state word (senders, receivers and tasks).
const COUNTS: u64 = (1 << GEN_SHIFT) - 1;

/// Which side of a queue a handle is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// A sending handle.
    Sender,
    /// A receiving handle.
    Receiver,
}

impl Side {
    #[inline]
    const fn shift(self) -> u32 {
        match self {
            Side::Sender => 16,
            Side::Receiver => 0,
        }
    }
}

#[inline]
const fn field(s: u64, shift: u32) -> u64 {
    (s >> shift) & COUNT_MASK
}

#[inline]
const fn vacant(s: u64) -> bool {
    s & VACANT != 0
}

#[inline]
const fn gen_of(s: u64) -> u64 {
    (s >> GEN_SHIFT) & GEN_MASK
}

/// Why a handle could not be counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeersError {
    /// Every slot is held by a live process.
    Full {
        /// The number of slots.
        slots: u64,
    },
    /// This process already holds 65535 handles of that side.
    Overflow,
}

impl fmt::Display for PeersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeersError::Full { slots } => write!(
                f,
                "peer table full: {slots} live processes already hold handles (make it larger with max_peers)"
            ),
            PeersError::Overflow => f.write_str("more than 65535 handles in one process"),
        }
    }
}

impl core::error::Error for PeersError {}

/// `task_done` was called more times than there were tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyTaskDone;

impl fmt::Display for TooManyTaskDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done called more times than items were put")
    }
}

impl core::error::Error for TooManyTaskDone {}

/// Why [`Peers::wait_tasks`] returned before every task was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TasksError {
    /// The deadline passed.
    TimedOut,
    /// Tasks were taken by processes that died before marking them done.
    Lost {
        /// The pid of the last process found dead with tasks.
        pid: u32,
        /// How many tasks were lost (and not yet acknowledged by
        /// `task_done`).
        tasks: u64,
    },
}

impl fmt::Display for TasksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TasksError::TimedOut => f.write_str("timed out waiting for tasks"),
            TasksError::Lost { pid, tasks } => write!(
                f,
                "{tasks} task(s) lost: process {pid} died before marking them done"
            ),
        }
    }
}

impl core::error::Error for TasksError {}

/// The body of a peer-table region.
#[repr(C, align(128))]
#[derive(Debug)]
struct PeersBody {
    /// Tasks put and not yet marked done (`JoinableQueue`).
    unfinished: AtomicU64,
    /// Tasks of processes found dead before marking them done, not yet
    /// acknowledged by a `task_done`.
    lost: AtomicU64,
    /// The pid of the last process whose tasks were lost.
    lost_pid: AtomicU64,
    /// `join` sleeps here; `task_done` reaching 0 and a loss notify.
    tasks: EventCount,
}

/// One slot: see the module docs for the state machine.
#[repr(C)]
#[derive(Debug)]
struct PeerSlot {
    /// Identity word of the owner, 0 if free.
    owner: AtomicU64,
    /// Counts, generation and the VACANT bit.
    state: AtomicU64,
}

#[cfg(not(multiproc_loom))]
mod layout_pins {
    use super::*;
    static_assertions::assert_eq_size!(PeersBody, [u8; 128]);
    static_assertions::assert_eq_size!(PeerSlot, [u64; 2]);
}
static_assertions::const_assert_eq!(core::mem::align_of::<PeersBody>(), 128);

// SAFETY: repr(C) of atomic u64s and an EventCount (atomics only): valid
// for every bit pattern, no pointers; size pinned above.
unsafe impl ShmSafe for PeersBody {}
// SAFETY: repr(C) over two atomic u64s; size pinned above.
unsafe impl ShmSafe for PeerSlot {}

/// A view of a peer table in a region: `Copy`, `Send` and `Sync`.
///
/// # Examples
///
/// ```
/// use multiproc_core::identity::Identity;
/// use multiproc_core::peers::{Peers, Side};
/// use multiproc_core::region::Region;
///
/// #[repr(C, align(128))]
/// struct Mem([u8; 1024]);
/// let mut mem = Box::new(Mem([0; 1024]));
/// let peers = Peers::create(Region::from_mut_slice(&mut mem.0), 8).unwrap();
/// let me = Identity::current();
/// peers.add(me, Side::Sender, 2).unwrap();
/// assert_eq!(peers.live(Side::Sender), 2);
/// assert!(peers.remove(me, Side::Sender, 2));
/// assert_eq!(peers.live(Side::Sender), 0);
/// ```
#[derive(Clone, Copy)]
pub struct Peers<'a> {
    parts: Parts<'a, PeersBody, PeerSlot>,
}

// SAFETY: a view of shared memory reached only through atomics (the slots,
// the task counters and their eventcount), built for concurrent use by
// many processes, hence many threads.
unsafe impl Send for Peers<'_> {}
// SAFETY: as for Send.
unsafe impl Sync for Peers<'_> {}

impl fmt::Debug for Peers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peers")
            .field("slots", &self.parts.count)
            .finish()
    }
}

/// This process's id, cached (and refreshed after `fork`). Under loom, a
/// per-thread id.
#[inline]
pub fn current_pid() -> u32 {
    crate::sync::current_pid()
}

/// Whether process `pid` runs (a zombie counts as dead). A system call or
/// a read of `/proc`: slow paths only.
pub fn process_alive(pid: u32) -> bool {
    crate::sync::pid_alive(pid)
}

/// What a liveness scan does with a slot it found held by a dead process.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Found {
    /// The owner is alive (or is the caller).
    Alive,
    /// The owner is dead: the slot was released (or someone else did).
    Dead,
}

impl<'a> Peers<'a> {
    /// Bytes a table of `slots` slots needs, or `None` if invalid.
    pub fn memory_size(slots: u64) -> Option<usize> {
        if !(1..=MAX_SLOTS).contains(&slots) {
            return None;
        }
        crate::region::Layout::of::<PeersBody, PeerSlot>(slots).map(|l| l.total)
    }

    /// Builds an empty table of `slots` slots in `region`.
    ///
    /// # Errors
    ///
    /// [`InitError::InvalidCapacity`] unless `1 <= slots <= MAX_SLOTS`, and
    /// the region errors of [`InitError`].
    pub fn create(region: Region<'a>, slots: u64) -> Result<Self, InitError> {
        if !(1..=MAX_SLOTS).contains(&slots) {
            return Err(InitError::InvalidCapacity { capacity: slots });
        }
        let spec = Spec {
            kind: Kind::Peers,
            elem: ElemType::of::<PeerSlot>(),
            capacity: slots,
            count: slots,
        };
        let body = || PeersBody {
            unfinished: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            lost_pid: AtomicU64::new(0),
            tasks: EventCount::new(),
        };
        let parts = Parts::create(region, spec, body, |_| PeerSlot {
            owner: AtomicU64::new(0),
            state: AtomicU64::new(VACANT),
        })?;
        Ok(Self { parts })
    }

    /// Finds a table another process created, without waiting.
    ///
    /// # Errors
    ///
    /// Every validation error of [`AttachError`].
    pub fn attach(region: Region<'a>) -> Result<Self, AttachError> {
        Self::open(region, None)
    }

    /// As [`attach`](Self::attach), waiting up to `timeout` for the creator.
    ///
    /// # Errors
    ///
    /// As [`attach`](Self::attach).
    pub fn attach_timeout(region: Region<'a>, timeout: Duration) -> Result<Self, AttachError> {
        Self::open(region, Some(Deadline::after(timeout)))
    }

    fn open(region: Region<'a>, deadline: Option<Deadline>) -> Result<Self, AttachError> {
        let parts = Parts::open(
            region,
            Kind::Peers,
            ElemType::of::<PeerSlot>(),
            |c| (1..=MAX_SLOTS).contains(&c).then_some(c),
            deadline,
        )?;
        Ok(Self { parts })
    }

    /// The number of slots.
    pub fn slots(&self) -> u64 {
        self.parts.count as u64
    }

    /// Bytes the table occupies in its region, header included.
    pub fn total_size(&self) -> u64 {
        self.parts.header.total_size()
    }

    #[inline]
    fn slot(&self, i: usize) -> &'a PeerSlot {
        self.parts.elem(i)
    }

    /// Loads slot `i` in the order the module docs require: the state
    /// word (Acquire: pairs with the claimer's Release CAS to a new
    /// generation, so the owner word it wrote is seen), then the owner.
    #[inline]
    fn load(&self, i: usize) -> (u64, u64) {
        let s = self.slot(i);
        let state = s.state.load(Ordering::Acquire);
        // Acquire: pairs with the Release of the owner's clearing store,
        // so a claimer that sees 0 also sees the V state before it.
        let owner = s.owner.load(Ordering::Acquire);
        (state, owner)
    }

    /// Changes the counts of a HELD slot from `state` to `new` (a state
    /// word with counts, or V to release it); on success, clears the
    /// owner too when `new` is V. Fails if the slot changed since `state`
    /// was loaded (with its owner, in that order).
    #[inline]
    fn update(&self, i: usize, owner: u64, state: u64, new: u64) -> Result<(), u64> {
        let s = self.slot(i);
        // AcqRel: Release so a reader that sees these counts sees what this
        // process did before (the handle's sends); Acquire pairs with the
        // claimer's Release as in `load`.
        s.state
            .compare_exchange(state, new, Ordering::AcqRel, Ordering::Acquire)?;
        if vacant(new) {
            self.free_owner(i, owner);
        }
        Ok(())
    }

    /// CLAIMED -> FREE: clears an owner word whose state is V.
    #[inline]
    fn free_owner(&self, i: usize, owner: u64) {
        // Release: pairs with the claimer's Acquire CAS in `claim`: the V
        // state written before is seen by whoever takes the slot next. A
        // failure means another reclaimer did it (the owner never returns).
        let _ = self
            .slot(i)
            .owner
            .compare_exchange(owner, 0, Ordering::Release, Ordering::Relaxed);
    }

    /// FREE -> CLAIMED -> HELD with `delta` as the first counts. Returns
    /// whether slot `i` was taken.
    fn claim(&self, i: usize, me: u64, delta: u64) -> bool {
        let s = self.slot(i);
        // Acquire: pairs with `free_owner`'s Release (the V state is seen).
        if s.owner
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // CLAIMED: only this process writes the state now (reclaimers need
        // it dead, stale CASes expect a non-V word of an older claim). By
        // the protocol the word is V here; a corrupt one is overwritten.
        let mut st = s.state.load(Ordering::Acquire);
        loop {
            let next = ((gen_of(st) + 1) & GEN_MASK) << GEN_SHIFT | delta;
            // Release: pairs with the Acquire state loads of `load`: who
            // sees these counts sees the owner word written above.
            match s
                .state
                .compare_exchange(st, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => st = now,
            }
        }
    }

    /// If slot `i` (loaded as `state`, `owner`) is held by a dead process,
    /// releases it (its tasks go to the lost count) and frees it.
    fn check_owner(&self, i: usize, state: u64, owner: u64, me: u64) -> Found {
        if owner == me || identity_alive(owner) {
            return Found::Alive;
        }
        self.reclaim(i, state, owner);
        Found::Dead
    }

    /// Releases slot `i` of the dead `owner`, loaded as `state` (with the
    /// owner, in that order), and frees it; helps a reclaimer that
    /// released it and did not yet clear the owner word.
    fn reclaim(&self, i: usize, mut state: u64, owner: u64) {
        let s = self.slot(i);
        while !vacant(state) {
            let released = VACANT | state & (GEN_MASK << GEN_SHIFT);
            // AcqRel: as in `update`. Only one reclaimer wins this CAS.
            match s
                .state
                .compare_exchange(state, released, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.count_lost(field(state, TASK_SHIFT), owner);
                    break;
                }
                Err(now) => {
                    state = now;
                    // Acquire: state then owner, as in `load`. Another
                    // owner now: the slot was freed and taken again.
                    if s.owner.load(Ordering::Acquire) != owner {
                        return;
                    }
                }
            }
        }
        self.free_owner(i, owner);
    }

    /// Adds the `tasks` of a dead `owner` to the lost count.
    fn count_lost(&self, tasks: u64, owner: u64) {
        if tasks == 0 {
            return;
        }
        let b = self.parts.body;
        let pid = Identity::from_word(owner).map_or(0, Identity::pid);
        // Relaxed: a diagnostic, read with the count below.
        b.lost_pid.store(u64::from(pid), Ordering::Relaxed);
        // Release: pairs with the Acquire load in `wait_tasks`.
        b.lost.fetch_add(tasks, Ordering::Release);
        b.tasks.notify_all();
    }

    /// Counts `n` more handles of `side` held by process `id`.
    ///
    /// # Errors
    ///
    /// [`PeersError::Full`] if no slot is free (slots of dead processes are
    /// reclaimed first), [`PeersError::Overflow`] past 65535 handles.
    pub fn add(&self, id: Identity, side: Side, n: u16) -> Result<(), PeersError> {
        self.add_field(id.to_word(), side.shift(), u64::from(n))
    }

    fn add_field(&self, me: u64, shift: u32, n: u64) -> Result<(), PeersError> {
        if n == 0 {
            return Ok(());
        }
        let delta = n << shift;
        let mut overflow = false;
        // First: a slot this process already holds.
        for i in 0..self.parts.count {
            let (mut st, owner) = self.load(i);
            if owner != me {
                continue;
            }
            while !vacant(st) {
                if field(st, shift) + n > COUNT_MASK {
                    overflow = true;
                    break;
                }
                match self.update(i, me, st, st + delta) {
                    Ok(()) => return Ok(()),
                    // Changed: still ours only if the owner still is (the
                    // state-then-owner order of `load`).
                    Err(now) => {
                        st = now;
                        // Acquire: as in `load`.
                        if self.slot(i).owner.load(Ordering::Acquire) != me {
                            break;
                        }
                    }
                }
            }
        }
        if overflow {
            return Err(PeersError::Overflow);
        }
        // Then a free slot; on the second pass, free the slots of dead
        // processes on the way.
        for pass in 0..2 {
            for i in 0..self.parts.count {
                let (st, owner) = self.load(i);
                if owner != 0 && (pass == 0 || self.check_owner(i, st, owner, me) == Found::Alive) {
                    continue;
                }
                if self.claim(i, me, delta) {
                    return Ok(());
                }
            }
        }
        Err(PeersError::Full {
            slots: self.parts.count as u64,
        })
    }

    /// Drops `n` handles of `side` held by `id` (saturating at zero). A
    /// slot whose counts all reach zero is freed. Returns `false` if `id`
    /// held no such handle.
    pub fn remove(&self, id: Identity, side: Side, n: u16) -> bool {
        self.remove_field(|o| o == id.to_word(), side.shift(), u64::from(n))
            .0
    }

    /// As [`remove`](Self::remove), for the live process with pid `pid`
    /// (the maker of a token names itself by pid: if it died and its pid
    /// now names another holder, that holder's count drops instead).
    pub fn remove_pid(&self, pid: u32, side: Side, n: u16) -> bool {
        let of = |o: u64| Identity::from_word(o).is_some_and(|id| id.pid() == pid);
        self.remove_field(of, side.shift(), u64::from(n)).0
    }

    /// Subtracts up to `n` from the `shift` field of slots whose owner
    /// `mine` accepts, leaving slots whose counts would all reach zero
    /// alone unless `free_ok`. Returns (whether any was found, how many
    /// were taken).
    fn remove_field(&self, mine: impl Fn(u64) -> bool, shift: u32, n: u64) -> (bool, u64) {
        let mut left = n;
        let mut found = false;
        for i in 0..self.parts.count {
            if left == 0 {
                break;
            }
            let (mut st, owner) = self.load(i);
            if owner == 0 || !mine(owner) {
                continue;
            }
            while !vacant(st) && field(st, shift) > 0 {
                let take = field(st, shift).min(left);
                let mut new = st - (take << shift);
                if new & COUNTS == 0 {
                    new = VACANT | new & (GEN_MASK << GEN_SHIFT);
                }
                match self.update(i, owner, st, new) {
                    Ok(()) => {
                        found = true;
                        left -= take;
                        break;
                    }
                    Err(now) => {
                        st = now;
                        // Acquire: as in `load`.
                        if self.slot(i).owner.load(Ordering::Acquire) != owner {
                            break;
                        }
                    }
                }
            }
        }
        (found, n - left)
    }

    /// The number of `side` handles `id` holds (no liveness check).
    pub fn count(&self, id: Identity, side: Side) -> u64 {
        (0..self.parts.count)
            .map(|i| self.load(i))
            .filter(|&(st, o)| !vacant(st) && o == id.to_word())
            .map(|(st, _)| field(st, side.shift()))
            .sum()
    }

    /// The number of `side` handles counted in the table, alive or not (no
    /// system call).
    pub fn total(&self, side: Side) -> u64 {
        (0..self.parts.count)
            .map(|i| self.slot(i).state.load(Ordering::Acquire))
            .filter(|&st| !vacant(st))
            .map(|st| field(st, side.shift()))
            .sum()
    }

    /// The number of `side` handles held by live processes. Checks each
    /// foreign holder's liveness (a read of `/proc` each): call it on slow
    /// paths only. Slots of dead processes are released on the way.
    pub fn live(&self, side: Side) -> u64 {
        let me = crate::sync::current_identity();
        let mut total = 0;
        for i in 0..self.parts.count {
            let (st, owner) = self.load(i);
            if owner == 0 || (vacant(st) && owner == me) {
                continue;
            }
            if self.check_owner(i, st, owner, me) == Found::Alive && !vacant(st) {
                total += field(st, side.shift());
            }
        }
        total
    }

    /// Whether some live process holds a `side` handle: the cheap question
    /// a blocked call asks. Counts first (no system call; `false` at once
    /// when the side's count is 0), then asks the kernel about the holder
    /// found alive last time (`witness`, kept by the caller between calls,
    /// 0 at first): one read of `/proc` while that holder lives; a scan of
    /// the other holders (releasing dead ones' slots) when it died.
    pub fn any_alive(&self, side: Side, witness: &mut u64) -> bool {
        if self.total(side) == 0 {
            return false;
        }
        let me = crate::sync::current_identity();
        let holds = |st: u64| !vacant(st) && field(st, side.shift()) > 0;
        let w = *witness as usize;
        if (1..=self.parts.count).contains(&w) {
            let (st, owner) = self.load(w - 1);
            if holds(st) && owner != 0 && (owner == me || identity_alive(owner)) {
                return true;
            }
        }
        for i in 0..self.parts.count {
            let (st, owner) = self.load(i);
            if owner == 0 || !holds(st) {
                continue;
            }
            if self.check_owner(i, st, owner, me) == Found::Alive {
                *witness = i as u64 + 1;
                return true;
            }
        }
        *witness = 0;
        false
    }

    /// Whether any slot counts a `side` handle, alive or not (no system
    /// call: a hint for fast paths).
    pub fn any(&self, side: Side) -> bool {
        self.total(side) > 0
    }

    /// Counts one more unfinished task (before the item is put).
    pub fn task_add(&self) {
        // Relaxed: the count is the only data; `task_done`'s decrement is an
        // RMW in the same modification order.
        self.parts.body.unfinished.fetch_add(1, Ordering::Relaxed);
    }

    /// Withdraws a task counted by [`task_add`](Self::task_add) whose item
    /// could not be put.
    pub fn task_cancel(&self) {
        let _ = self.lower_unfinished();
    }

    /// Records that process `id` took a task (a successful `get`): it is
    /// counted lost if `id` dies before marking it done. Returns `false`
    /// if it could not be recorded (65535 tasks outstanding in `id`, or a
    /// full table): that task then cannot be reported lost.
    pub fn task_taken(&self, id: Identity) -> bool {
        self.add_field(id.to_word(), TASK_SHIFT, 1).is_ok()
    }

    /// Lowers `unfinished`; wakes `join`ers when it reaches 0 (and forgets
    /// lost tasks: none is outstanding any more).
    fn lower_unfinished(&self) -> Result<(), TooManyTaskDone> {
        let b = self.parts.body;
        // Relaxed: a guess that the CAS confirms.
        let mut n = b.unfinished.load(Ordering::Relaxed);
        loop {
            if n == 0 {
                return Err(TooManyTaskDone);
            }
            // Release: pairs with the Acquire load in `wait_tasks`: the work
            // done for the task is seen by the joiner.
            match b
                .unfinished
                .compare_exchange(n, n - 1, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        if n == 1 {
            // Relaxed: nothing is outstanding, so no loss is either.
            b.lost.store(0, Ordering::Relaxed);
            b.tasks.notify_all();
        }
        Ok(())
    }

    /// Marks one task done by process `id` (see the module docs for which
    /// count it lowers). Wakes `join`ers when none is left.
    ///
    /// # Errors
    ///
    /// [`TooManyTaskDone`] when no task is unfinished.
    pub fn task_done(&self, id: Identity) -> Result<(), TooManyTaskDone> {
        self.lower_unfinished()?;
        let me = id.to_word();
        if self.remove_field(|o| o == me, TASK_SHIFT, 1).1 == 1 {
            return Ok(());
        }
        let b = self.parts.body;
        // Relaxed: a guess that the CAS confirms; the count carries no data.
        let mut lost = b.lost.load(Ordering::Relaxed);
        while lost > 0 {
            match b
                .lost
                .compare_exchange(lost, lost - 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => lost = now,
            }
        }
        // Another process's task: take it from a slot that keeps a count.
        for i in 0..self.parts.count {
            let (st, owner) = self.load(i);
            if owner != 0
                && !vacant(st)
                && field(st, TASK_SHIFT) > 0
                && (st - (1 << TASK_SHIFT)) & COUNTS != 0
                && self.update(i, owner, st, st - (1 << TASK_SHIFT)).is_ok()
            {
                break;
            }
        }
        Ok(())
    }

    /// The number of unfinished tasks (put and not marked done, lost ones
    /// included).
    pub fn unfinished(&self) -> u64 {
        self.parts.body.unfinished.load(Ordering::Acquire)
    }

    /// Waits until no task is unfinished, or `deadline`. While it waits it
    /// looks (every [`RECHECK`]) for holders of tasks that died: their
    /// tasks will never be marked done.
    ///
    /// # Errors
    ///
    /// [`TasksError::Lost`] once a process is found dead with tasks it took
    /// and did not mark done (and they were not acknowledged since);
    /// [`TasksError::TimedOut`] at the deadline.
    pub fn wait_tasks(&self, deadline: Option<Deadline>) -> Result<(), TasksError> {
        let b = self.parts.body;
        loop {
            // Acquire: pairs with the Release in `lower_unfinished`.
            let left = b.unfinished.load(Ordering::Acquire);
            if left == 0 {
                return Ok(());
            }
            self.find_lost();
            // Acquire: pairs with the Release in `reclaim`.
            let lost = b.lost.load(Ordering::Acquire).min(left);
            if lost > 0 {
                return Err(TasksError::Lost {
                    // Relaxed: a diagnostic.
                    pid: b.lost_pid.load(Ordering::Relaxed) as u32,
                    tasks: lost,
                });
            }
            if deadline.is_some_and(|d| d.has_passed()) {
                return Err(TasksError::TimedOut);
            }
            let slice = Deadline::after(RECHECK).min(deadline);
            let _ = b.tasks.wait_for(Spin::DEFAULT, Some(slice), || {
                // Acquire: as above.
                (b.unfinished.load(Ordering::Acquire) == 0 || b.lost.load(Ordering::Acquire) > 0)
                    .then_some(())
            });
        }
    }

    /// Releases the slots of dead processes that hold tasks (count first:
    /// the kernel is asked only about holders of tasks).
    fn find_lost(&self) {
        let me = crate::sync::current_identity();
        for i in 0..self.parts.count {
            let (st, owner) = self.load(i);
            if owner != 0 && !vacant(st) && field(st, TASK_SHIFT) > 0 {
                self.check_owner(i, st, owner, me);
            }
        }
    }

    /// Tasks found lost and not yet acknowledged.
    pub fn lost(&self) -> u64 {
        self.parts.body.lost.load(Ordering::Acquire)
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests;

#[cfg(all(test, multiproc_loom))]
mod loom;

#[cfg(all(test, multiproc_loom))]
mod loom_handles;
