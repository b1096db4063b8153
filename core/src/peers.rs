//! A peer table: which processes hold how many handles of each side of a
//! queue, so that "every sender is gone" can be decided even when a sender
//! died by `SIGKILL` without dropping its handles.
//!
//! The std layer's queues put one [`Peers`] region next to their ring. Each
//! process that holds handles owns (at least) one slot, a single `u64`:
//!
//! ```text
//!   63            32 31          16 15           0
//!  +----------------+--------------+--------------+
//!  |      pid       |   senders    |  receivers   |     0 = free slot
//!  +----------------+--------------+--------------+
//! ```
//!
//! | operation | how |
//! |---|---|
//! | [`add`](Peers::add) | CAS-add to a slot holding `pid`, else CAS a free slot from 0 to `pid \| count` |
//! | [`remove`](Peers::remove) | CAS-subtract from a slot holding `pid` with a non-zero count; a slot whose counts reach 0 becomes 0 (free) in the same CAS |
//! | [`live`](Peers::live) | sum over slots with a count on that side whose pid is alive (a system call per foreign pid: slow path only); a slot of a dead pid is freed with a CAS |
//!
//! Two threads of one process may each claim a slot for the same pid at the
//! same moment; that is harmless (counts are summed per pid), so no lock is
//! needed. Every update is a single CAS on one word, so a process killed at
//! any instant leaves each slot either before or after its update, never
//! half-written; its slots then count as dead ones.
//!
//! The body also holds the task counter of a `JoinableQueue` (unfinished
//! tasks and an [`EventCount`] that `join` sleeps on).
//!
//! # Pid reuse
//!
//! A slot names a process by pid only. If a process dies and its pid is
//! reused by an unrelated process before anyone scans the table, the slot
//! counts as alive until that process exits: a disconnection is reported
//! late, never early.

use core::fmt;
use core::time::Duration;

use crate::region::{AttachError, ElemType, InitError, Kind, Parts, Region, ShmSafe, Spec};
use crate::sync::{pid_alive, AtomicU64, Ordering};
use crate::time::Deadline;
use crate::wait::{EventCount, Spin};

/// The largest number of slots a table may have.
pub const MAX_SLOTS: u64 = 4096;

const COUNT_MASK: u64 = 0xffff;

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
const fn pid_of(w: u64) -> u32 {
    (w >> 32) as u32
}

#[inline]
const fn count_of(w: u64, side: Side) -> u64 {
    (w >> side.shift()) & COUNT_MASK
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
            PeersError::Full { slots } => {
                write!(f, "peer table full: {slots} processes already hold handles")
            }
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

/// The body of a peer-table region.
#[repr(C, align(128))]
#[derive(Debug)]
struct PeersBody {
    /// Tasks put and not yet marked done (`JoinableQueue`).
    unfinished: AtomicU64,
    /// `join` sleeps here; the `task_done` that reaches 0 notifies.
    tasks: EventCount,
}

/// One slot: see the module docs for the packing.
#[repr(C)]
#[derive(Debug)]
struct PeerSlot(AtomicU64);

#[cfg(not(multiproc_loom))]
mod layout_pins {
    use super::*;
    static_assertions::assert_eq_size!(PeersBody, [u8; 128]);
    static_assertions::assert_eq_size!(PeerSlot, u64);
}
static_assertions::const_assert_eq!(core::mem::align_of::<PeersBody>(), 128);

// SAFETY: repr(C) of an atomic u64 and an EventCount (atomics only): valid
// for every bit pattern, no pointers; size pinned above.
unsafe impl ShmSafe for PeersBody {}
// SAFETY: repr(C) over one atomic u64; size pinned above.
unsafe impl ShmSafe for PeerSlot {}

/// A view of a peer table in a region: `Copy`, `Send` and `Sync`.
///
/// # Examples
///
/// ```
/// use multiproc_core::peers::{Peers, Side};
/// use multiproc_core::region::Region;
///
/// #[repr(C, align(128))]
/// struct Mem([u8; 1024]);
/// let mut mem = Box::new(Mem([0; 1024]));
/// let peers = Peers::create(Region::from_mut_slice(&mut mem.0), 8).unwrap();
/// let me = multiproc_core::peers::current_pid();
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
// the task counter and its eventcount), built for concurrent use by many
// processes, hence many threads.
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
    pid_alive(pid)
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
            tasks: EventCount::new(),
        };
        let parts = Parts::create(region, spec, body, |_| PeerSlot(AtomicU64::new(0)))?;
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
    fn slot(&self, i: usize) -> &'a AtomicU64 {
        &self.parts.elem(i).0
    }

    /// Counts `n` more handles of `side` held by process `pid`.
    ///
    /// # Errors
    ///
    /// [`PeersError::Full`] if no slot is free (slots of dead processes are
    /// reclaimed first), [`PeersError::Overflow`] past 65535 handles.
    pub fn add(&self, pid: u32, side: Side, n: u16) -> Result<(), PeersError> {
        let delta = u64::from(n) << side.shift();
        let mut overflow = false;
        // First: a slot this pid already holds.
        for i in 0..self.parts.count {
            let s = self.slot(i);
            // Relaxed: a guess that the CAS confirms; the counts publish no
            // other data (the ring's own orderings carry the messages).
            let mut w = s.load(Ordering::Relaxed);
            while w != 0 && pid_of(w) == pid {
                if count_of(w, side) + u64::from(n) > COUNT_MASK {
                    overflow = true;
                    break;
                }
                // AcqRel: the counts are read by `live` in other processes
                // (Acquire there); a Release here orders the handle's earlier
                // sends before the count it adds or drops.
                match s.compare_exchange(w, w + delta, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return Ok(()),
                    Err(now) => w = now,
                }
            }
        }
        if overflow {
            return Err(PeersError::Overflow);
        }
        let fresh = (u64::from(pid) << 32) | delta;
        for pass in 0..2 {
            for i in 0..self.parts.count {
                let s = self.slot(i);
                // Relaxed: as above.
                let w = s.load(Ordering::Relaxed);
                let free = w == 0 || (pass == 1 && (w & 0xffff_ffff == 0 || !pid_alive(pid_of(w))));
                // AcqRel: as above.
                if free
                    && s.compare_exchange(w, fresh, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    return Ok(());
                }
            }
        }
        Err(PeersError::Full {
            slots: self.parts.count as u64,
        })
    }

    /// Drops `n` handles of `side` held by `pid` (saturating at zero). A
    /// slot whose counts both reach zero is freed. Returns `false` if `pid`
    /// held no such handle.
    pub fn remove(&self, pid: u32, side: Side, n: u16) -> bool {
        let mut left = u64::from(n);
        let mut found = false;
        for i in 0..self.parts.count {
            if left == 0 {
                break;
            }
            let s = self.slot(i);
            // Relaxed: a guess that the CAS confirms.
            let mut w = s.load(Ordering::Relaxed);
            while w != 0 && pid_of(w) == pid && count_of(w, side) > 0 {
                let take = count_of(w, side).min(left);
                let mut new = w - (take << side.shift());
                if new & 0xffff_ffff == 0 {
                    new = 0;
                }
                // AcqRel: pairs with the Acquire loads in `live`.
                match s.compare_exchange(w, new, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => {
                        found = true;
                        left -= take;
                        break;
                    }
                    Err(now) => w = now,
                }
            }
        }
        found
    }

    /// The number of `side` handles `pid` holds (no liveness check).
    pub fn count(&self, pid: u32, side: Side) -> u64 {
        (0..self.parts.count)
            .map(|i| self.slot(i).load(Ordering::Acquire))
            .filter(|&w| w != 0 && pid_of(w) == pid)
            .map(|w| count_of(w, side))
            .sum()
    }

    /// The number of `side` handles held by live processes. Checks each
    /// foreign pid's liveness (a system call each): call it on slow paths
    /// only. Slots of dead processes are freed on the way.
    pub fn live(&self, side: Side) -> u64 {
        let me = current_pid();
        let mut total = 0;
        for i in 0..self.parts.count {
            let s = self.slot(i);
            // Acquire: pairs with the AcqRel updates in `add`/`remove`.
            let w = s.load(Ordering::Acquire);
            if w == 0 {
                continue;
            }
            let pid = pid_of(w);
            if pid == me || pid_alive(pid) {
                total += count_of(w, side);
            } else {
                // Dead: free its slot (if nobody changed it meanwhile).
                // Relaxed: freeing publishes nothing.
                let _ = s.compare_exchange(w, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
        total
    }

    /// Whether any slot counts a `side` handle, alive or not (no system
    /// call: a hint for fast paths).
    pub fn any(&self, side: Side) -> bool {
        (0..self.parts.count).any(|i| count_of(self.slot(i).load(Ordering::Acquire), side) > 0)
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
        let _ = self.task_done();
    }

    /// Marks one task done. Wakes `join`ers when none is left.
    ///
    /// # Errors
    ///
    /// [`TooManyTaskDone`] when no task is unfinished.
    pub fn task_done(&self) -> Result<(), TooManyTaskDone> {
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
            b.tasks.notify_all();
        }
        Ok(())
    }

    /// The number of unfinished tasks.
    pub fn unfinished(&self) -> u64 {
        self.parts.body.unfinished.load(Ordering::Acquire)
    }

    /// Waits until no task is unfinished, or `deadline`. Returns whether
    /// none is.
    pub fn wait_tasks(&self, deadline: Option<Deadline>) -> bool {
        let b = self.parts.body;
        b.tasks
            .wait_for(Spin::DEFAULT, deadline, || {
                // Acquire: pairs with the Release in `task_done`.
                (b.unfinished.load(Ordering::Acquire) == 0).then_some(())
            })
            .is_some()
    }
}

#[cfg(all(test, not(multiproc_loom)))]
mod tests {
    extern crate std;
    use super::*;
    use crate::spsc::test_mem::{buf, bytes};

    #[test]
    fn add_remove_count_and_free() {
        let mut b = buf(Peers::memory_size(2).unwrap());
        let p = Peers::create(Region::from_mut_slice(bytes(&mut b)), 2).unwrap();
        let me = current_pid();
        p.add(me, Side::Sender, 1).unwrap();
        p.add(me, Side::Receiver, 3).unwrap();
        assert_eq!(p.count(me, Side::Sender), 1);
        assert_eq!(p.count(me, Side::Receiver), 3);
        assert_eq!((p.live(Side::Sender), p.live(Side::Receiver)), (1, 3));
        assert!(p.remove(me, Side::Sender, 1));
        assert!(!p.remove(me, Side::Sender, 1));
        assert!(p.any(Side::Receiver) && !p.any(Side::Sender));
        assert!(p.remove(me, Side::Receiver, 5));
        assert_eq!(p.slot(0).load(Ordering::Relaxed), 0);
        assert_eq!(p.slot(1).load(Ordering::Relaxed), 0);
    }

    #[test]
    fn full_table_reclaims_dead_slots_and_errors() {
        let mut b = buf(Peers::memory_size(2).unwrap());
        let p = Peers::create(Region::from_mut_slice(bytes(&mut b)), 2).unwrap();
        let me = current_pid();
        let dead = (1 << 22) + 7; // above pid_max: never alive
        p.add(dead, Side::Sender, 1).unwrap();
        p.add(1, Side::Sender, 1).unwrap(); // init: alive
        assert_eq!(p.count(dead, Side::Sender), 1);
        p.add(me, Side::Receiver, 1).unwrap(); // takes the dead slot
        assert_eq!(p.count(dead, Side::Sender), 0);
        assert_eq!(
            p.add(me + 1, Side::Sender, 1),
            Err(PeersError::Full { slots: 2 })
        );
        assert_eq!(
            p.add(me, Side::Receiver, u16::MAX),
            Err(PeersError::Overflow)
        );
        assert!(std::format!("{}", PeersError::Full { slots: 2 }).starts_with("peer table full"));
    }

    #[test]
    fn live_skips_and_frees_dead() {
        let mut b = buf(Peers::memory_size(4).unwrap());
        let p = Peers::create(Region::from_mut_slice(bytes(&mut b)), 4).unwrap();
        p.add((1 << 22) + 9, Side::Sender, 4).unwrap();
        assert!(p.any(Side::Sender));
        assert_eq!(p.live(Side::Sender), 0);
        assert!(!p.any(Side::Sender));
    }

    #[test]
    fn tasks_count_and_wait() {
        let mut b = buf(Peers::memory_size(1).unwrap());
        let p = Peers::create(Region::from_mut_slice(bytes(&mut b)), 1).unwrap();
        assert_eq!(p.task_done(), Err(TooManyTaskDone));
        assert!(p.wait_tasks(None));
        p.task_add();
        p.task_add();
        assert!(!p.wait_tasks(Some(Deadline::after(Duration::from_millis(5)))));
        p.task_done().unwrap();
        p.task_cancel();
        assert_eq!(p.unfinished(), 0);
        assert!(p.wait_tasks(Some(Deadline::after(Duration::ZERO))));
    }

    #[test]
    fn attach_validates_and_sizes() {
        assert!(Peers::memory_size(0).is_none());
        assert!(Peers::memory_size(MAX_SLOTS + 1).is_none());
        let mut b = buf(Peers::memory_size(3).unwrap());
        let r = Region::from_mut_slice(bytes(&mut b));
        assert_eq!(Peers::attach(r).unwrap_err(), AttachError::NotReady);
        assert!(matches!(
            Peers::create(r, 0),
            Err(InitError::InvalidCapacity { .. })
        ));
        let p = Peers::create(r, 3).unwrap();
        assert_eq!(p.total_size() as usize, Peers::memory_size(3).unwrap());
        let q = Peers::attach_timeout(r, Duration::ZERO).unwrap();
        assert_eq!(q.slots(), 3);
    }
}

#[cfg(all(test, multiproc_loom))]
mod loom_tests {
    use super::*;
    use crate::spsc::test_mem::leak;
    use loom::thread;

    fn table(slots: u64) -> Peers<'static> {
        let mem = leak(Peers::memory_size(slots).unwrap());
        Peers::create(Region::from_mut_slice(mem), slots).unwrap()
    }

    /// Two threads of one pid register and unregister concurrently: the
    /// count is never wrong, whichever slots they end up in.
    #[test]
    fn peers_same_pid_add_remove() {
        loom::model(|| {
            let p = table(2);
            p.add(7, Side::Sender, 1).unwrap();
            let t = thread::spawn(move || {
                p.add(7, Side::Sender, 1).unwrap();
                assert!(p.remove(7, Side::Sender, 1));
            });
            p.add(7, Side::Receiver, 1).unwrap();
            assert!(p.remove(7, Side::Sender, 1));
            t.join().unwrap();
            assert_eq!(p.count(7, Side::Sender), 0);
            assert_eq!(p.count(7, Side::Receiver), 1);
            assert!(p.remove(7, Side::Receiver, 1));
            assert!(!p.any(Side::Receiver));
        });
    }

    /// Two pids race for slots while one frees its last count: no count is
    /// lost or doubled, and a freed slot can be taken by the other.
    #[test]
    fn peers_two_pids_share_slots() {
        loom::model(|| {
            let p = table(2);
            p.add(1, Side::Sender, 1).unwrap();
            let t = thread::spawn(move || {
                p.add(2, Side::Receiver, 1).unwrap();
                p.add(2, Side::Sender, 1).unwrap();
            });
            assert!(p.remove(1, Side::Sender, 1));
            t.join().unwrap();
            assert_eq!(p.count(1, Side::Sender), 0);
            assert_eq!(p.count(2, Side::Sender), 1);
            assert_eq!(p.count(2, Side::Receiver), 1);
        });
    }
}
