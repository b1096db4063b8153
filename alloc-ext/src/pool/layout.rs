//! The pool's shared segment: a control block with one row per worker,
//! then two byte rings per worker, and the frames that travel in them.
//!
//! ```text
//!  offset
//!       0  Control: magic, version, workers, ring size, max message   (line 0)
//!     128  doorbell: EventCount (the owner sleeps here for results)   (line 1)
//!     256  rows[MAX_WORKERS]: identity, claim gate, holding (64 B each)
//!   16640  worker 0 task ring   (ByteRing: owner -> worker)
//!          worker 0 result ring (ByteRing: worker -> owner)
//!          worker 1 task ring ...
//! ```
//!
//! # Why one ring pair per worker, not one shared task queue
//!
//! The owner assigns every chunk to a worker itself, so it always knows
//! which chunks a worker holds: those it sent to that worker's task ring
//! and has no final result frame for. The worker's row adds the one fact
//! the owner cannot see: its claim gate (`multiproc_core::claim_gate`), in
//! which it claims each chunk it reads before running it. When the worker
//! dies, the owner drains its result ring (frames sent before the death
//! are complete); then a held chunk numbered below the gate's `claimed`
//! count was running (at most one: a worker runs one chunk at a time) and
//! is lost; the others never started and go back to the queue. The same
//! gate lets the owner take back chunks queued behind a long one, for an
//! idle worker, with no chance that both workers run them.
//! A shared queue would leave a window between a worker's pop and its
//! record of what it popped, in which a death loses a task without a
//! trace (the hang of Python's pool, bpo-22393). The cost is that the
//! owner balances load itself ([`super::state`]).
//!
//! # Frames
//!
//! ```text
//!  task:   TaskHead (40 B)   | items, postcard, back to back
//!  result: ResultHead (32 B) | outcomes: [tag u8 | len u32 LE | bytes]...
//! ```
//!
//! A chunk's results may span several result frames (each at most the
//! ring's `max_frame`); the last carries `last = 1`.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use multiproc_core::bytering::ByteRing;
use multiproc_core::claim_gate::ClaimGate;
use multiproc_core::region::Region;
use multiproc_core::wait::EventCount;

use super::error::PoolError;
use crate::shm::SharedMemory;

/// Most workers a pool may have.
pub const MAX_WORKERS: usize = 256;

const MAGIC: u64 = u64::from_le_bytes(*b"mpPOOL\0\x01");
const VERSION: u32 = 1;

/// The control block at offset 0.
#[repr(C, align(128))]
pub(crate) struct Control {
    magic: u64,
    version: u32,
    workers: u32,
    ring_bytes: u64,
    max_frame: u64,
    _pad: [u8; 96],
    /// The owner's wait for result frames and deaths; workers ring it
    /// after each result frame (one fence and one load when nobody sleeps).
    pub(crate) doorbell: DoorbellLine,
    pub(crate) rows: [Row; MAX_WORKERS],
}

/// The doorbell on a line of its own.
#[repr(C, align(128))]
pub(crate) struct DoorbellLine(pub(crate) EventCount);

/// One worker's row, written by the worker only.
#[repr(C, align(64))]
pub(crate) struct Row {
    /// The worker's identity word (pid and start time), for diagnostics.
    pub(crate) identity: AtomicU64,
    /// The worker claims each chunk it reads here before running it, and
    /// the owner takes back queued chunks not yet claimed (to give them to
    /// an idle worker). `claimed` counts every chunk read: after the
    /// worker's death, a chunk below it ran (or was taken back), a chunk
    /// above it never ran.
    pub(crate) gate: ClaimGate,
    /// `job << 32 | chunk` of the chunk running now (diagnostics only; the
    /// owner's accounting uses the gate).
    pub(crate) holding: AtomicU64,
    _pad: [u8; 40],
}

const _: () = assert!(std::mem::size_of::<Row>() == 64);
const _: () = assert!(std::mem::align_of::<Row>() == 64);
const _: () = assert!(std::mem::size_of::<DoorbellLine>() == 128);
const _: () = assert!(std::mem::size_of::<EventCount>() <= 128);
const _: () = assert!(std::mem::size_of::<Control>() == 256 + 64 * MAX_WORKERS);
const _: () = assert!(std::mem::align_of::<Control>() == 128);
const _: () = assert!(std::mem::size_of::<Control>() % 128 == 0);

/// Which of a worker's two rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Owner to worker: chunks.
    Task = 0,
    /// Worker to owner: results.
    Result = 1,
}

/// The geometry of a pool segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) workers: usize,
    pub(crate) ring_bytes: u64,
    pub(crate) max_frame: u64,
}

impl Geometry {
    /// Checks the numbers and derives the ring's `max_frame`.
    pub(crate) fn new(workers: usize, ring_bytes: u64) -> Result<Self, PoolError> {
        if workers == 0 || workers > MAX_WORKERS {
            return Err(PoolError::InvalidConfig(format!(
                "{workers} workers (1 to {MAX_WORKERS})"
            )));
        }
        let Some(max_frame) = ByteRing::max_frame_for(ring_bytes) else {
            return Err(PoolError::InvalidConfig(format!(
                "ring size {ring_bytes} (a power of two of at least 64 bytes)"
            )));
        };
        if max_frame < 256 {
            return Err(PoolError::InvalidConfig(format!(
                "ring size {ring_bytes} (at least 1024 bytes)"
            )));
        }
        Ok(Self {
            workers,
            ring_bytes,
            max_frame,
        })
    }

    fn stride(&self) -> usize {
        ByteRing::memory_size(self.ring_bytes)
            .expect("checked in Geometry::new")
            .next_multiple_of(128)
    }

    fn ring_offset(&self, w: usize, dir: Dir) -> usize {
        std::mem::size_of::<Control>() + (2 * w + dir as usize) * self.stride()
    }

    /// Bytes of the whole segment.
    pub(crate) fn size(&self) -> usize {
        self.ring_offset(self.workers, Dir::Task)
    }
}

/// A mapped pool segment (the owner's, a spawned worker's, or the view a
/// fork child inherits).
pub(crate) struct PoolMem {
    ptr: NonNull<u8>,
    geo: Geometry,
    /// The mapping's owner; `None` in a fork child, which uses the mapping
    /// it inherited and never unmaps it.
    shm: Option<SharedMemory>,
}

// SAFETY: the mapping is shared memory accessed only through atomics and
// the rings' own synchronisation; the pointer stays valid as long as the
// `PoolMem` (the `SharedMemory` it may own is `Send` + `Sync`).
unsafe impl Send for PoolMem {}
// SAFETY: as above: `&PoolMem` hands out only `&` to atomics and rings.
unsafe impl Sync for PoolMem {}

impl std::fmt::Debug for PoolMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolMem")
            .field("geometry", &self.geo)
            .field("name", &self.name())
            .finish()
    }
}

/// What a fork child needs to use its parent's mapping: its address and
/// geometry (plain numbers, nothing with a destructor).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemView {
    addr: usize,
    geo: Geometry,
}

impl PoolMem {
    /// Makes the segment (anonymous for fork workers, named for spawned
    /// ones) and writes the control block and every ring.
    pub(crate) fn create(geo: Geometry, named: bool) -> Result<Self, PoolError> {
        let shm = if named {
            SharedMemory::create_unique(geo.size())?
        } else {
            SharedMemory::anonymous(geo.size())?
        };
        let ptr = NonNull::new(shm.as_ptr()).expect("mapping is non-null");
        let mem = Self {
            ptr,
            geo,
            shm: Some(shm),
        };
        let ctl = mem.ptr.as_ptr().cast::<Control>();
        // SAFETY: the segment is fresh (zero-filled by the kernel), at least
        // `size_of::<Control>()` bytes, page-aligned; nothing else uses it
        // yet. Only the header fields are written; the doorbell and the
        // rows are valid all-zero (an EventCount at zero is `new()`, rows
        // start at zero).
        unsafe {
            std::ptr::addr_of_mut!((*ctl).magic).write(MAGIC);
            std::ptr::addr_of_mut!((*ctl).version).write(VERSION);
            std::ptr::addr_of_mut!((*ctl).workers).write(geo.workers as u32);
            std::ptr::addr_of_mut!((*ctl).ring_bytes).write(geo.ring_bytes);
            std::ptr::addr_of_mut!((*ctl).max_frame).write(geo.max_frame);
        }
        for w in 0..geo.workers {
            for dir in [Dir::Task, Dir::Result] {
                // SAFETY: fresh zero-filled memory that no structure uses yet.
                let region = unsafe { mem.region(w, dir).assume_zeroed() };
                ByteRing::create(region, geo.ring_bytes, geo.max_frame)
                    .map_err(|e| PoolError::InvalidConfig(format!("ring: {e}")))?;
            }
        }
        Ok(mem)
    }

    /// Maps a pool segment by name (a spawned worker) and checks its
    /// control block.
    pub(crate) fn open(name: &str) -> Result<Self, PoolError> {
        let shm = SharedMemory::open(name)?;
        if shm.len() < std::mem::size_of::<Control>() {
            return Err(PoolError::InvalidConfig("pool segment too small".into()));
        }
        // SAFETY: at least a control block of mapped bytes; plain integers
        // (any bit pattern valid), read once.
        let (magic, version, workers, ring_bytes) = unsafe {
            let ctl = shm.as_ptr().cast::<Control>();
            (
                std::ptr::addr_of!((*ctl).magic).read_volatile(),
                std::ptr::addr_of!((*ctl).version).read_volatile(),
                std::ptr::addr_of!((*ctl).workers).read_volatile(),
                std::ptr::addr_of!((*ctl).ring_bytes).read_volatile(),
            )
        };
        if magic != MAGIC || version != VERSION {
            return Err(PoolError::InvalidConfig("not a pool segment".into()));
        }
        let geo = Geometry::new(workers as usize, ring_bytes)?;
        if shm.len() < geo.size() {
            return Err(PoolError::InvalidConfig("pool segment truncated".into()));
        }
        let ptr = NonNull::new(shm.as_ptr()).expect("mapping is non-null");
        Ok(Self {
            ptr,
            geo,
            shm: Some(shm),
        })
    }

    /// The view a fork child rebuilds with [`inherited`](Self::inherited).
    pub(crate) fn view(&self) -> MemView {
        MemView {
            addr: self.ptr.as_ptr() as usize,
            geo: self.geo,
        }
    }

    /// The mapping `view` describes, in a fork child of its owner.
    ///
    /// # Safety
    ///
    /// This process is a fork child (or grandchild) of the process that
    /// made `view`, forked while its `PoolMem` was alive, so the mapping is
    /// present here at the same address; nothing here unmaps it.
    pub(crate) unsafe fn inherited(view: MemView) -> Self {
        Self {
            ptr: NonNull::new(view.addr as *mut u8).expect("view of a live mapping"),
            geo: view.geo,
            shm: None,
        }
    }

    pub(crate) fn geometry(&self) -> Geometry {
        self.geo
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.shm.as_ref().and_then(|s| s.name())
    }

    pub(crate) fn control(&self) -> &Control {
        // SAFETY: the mapping is at least a control block, 128-aligned (page
        // aligned), and lives as long as `self`; every field is an integer
        // or an atomic, valid for any bit pattern another process wrote.
        unsafe { &*self.ptr.as_ptr().cast::<Control>() }
    }

    pub(crate) fn row(&self, w: usize) -> &Row {
        &self.control().rows[w]
    }

    fn region(&self, w: usize, dir: Dir) -> Region<'static> {
        assert!(w < self.geo.workers);
        let off = self.geo.ring_offset(w, dir);
        // SAFETY: `off + stride <= size <= len`: inside the mapping. The
        // 'static lifetime is a promise the callers keep: every ring built
        // here is dropped before the `PoolMem` (the owner's state and the
        // worker's main hold the mem past their rings).
        unsafe {
            Region::from_raw_parts(
                NonNull::new(self.ptr.as_ptr().add(off)).expect("mapping is non-null"),
                self.geo.stride(),
            )
        }
    }

    /// Attaches to worker `w`'s ring.
    ///
    /// The ring borrows the mapping for `'static`: the caller keeps `self`
    /// alive while the ring and every handle made from it live.
    pub(crate) fn ring(&self, w: usize, dir: Dir) -> Result<ByteRing<'static>, PoolError> {
        ByteRing::attach(self.region(w, dir))
            .map_err(|e| PoolError::InvalidConfig(format!("pool ring: {e}")))
    }

    /// Empties worker `w`'s ring for a new worker: every byte of it is
    /// cleared and the ring made again.
    ///
    /// # Safety
    ///
    /// No process uses the ring: its worker is dead, and this process has
    /// dropped every handle (sender, receiver, `ByteRing`) on it.
    pub(crate) unsafe fn reset_ring(&self, w: usize, dir: Dir) -> Result<(), PoolError> {
        let region = self.region(w, dir);
        // SAFETY: the region is inside the mapping, and (caller) nothing
        // reads or writes it now.
        unsafe { std::ptr::write_bytes(region.as_ptr(), 0, region.len()) };
        // SAFETY: just zeroed, and unused (caller).
        let region = unsafe { region.assume_zeroed() };
        ByteRing::create(region, self.geo.ring_bytes, self.geo.max_frame)
            .map(|_| ())
            .map_err(|e| PoolError::InvalidConfig(format!("ring: {e}")))
    }

    /// Unlinks a named segment's name.
    pub(crate) fn unlink(&self) {
        if let Some(shm) = &self.shm {
            if shm.name().is_some() {
                let _ = shm.unlink();
            }
        }
    }
}

/// `job << 32 | chunk` for a row's `holding` word.
pub(crate) fn holding_word(job: u64, chunk: u64) -> u64 {
    (job << 32) | (chunk & 0xffff_ffff)
}

/// Head of a task frame.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct TaskHead {
    pub(crate) job: u64,
    pub(crate) chunk: u64,
    /// Offset of the chunk runner from the anchor (see `func`).
    pub(crate) runner: u64,
    /// Offset of the user's function from the anchor.
    pub(crate) func: u64,
    pub(crate) count: u32,
    pub(crate) _reserved: u32,
}

/// Head of a result frame.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ResultHead {
    pub(crate) job: u64,
    pub(crate) chunk: u64,
    /// Index in the chunk of the first outcome of this frame.
    pub(crate) first: u32,
    /// Outcomes in this frame.
    pub(crate) count: u32,
    /// 1 on the chunk's last frame.
    pub(crate) last: u32,
    /// On the last frame: how long the chunk ran in the worker, in ns
    /// (saturated), which sets how many chunks the owner queues to it.
    pub(crate) run_ns: u32,
}

pub(crate) const TASK_HEAD: usize = std::mem::size_of::<TaskHead>();
pub(crate) const RESULT_HEAD: usize = std::mem::size_of::<ResultHead>();
const _: () = assert!(TASK_HEAD == 40);
const _: () = assert!(RESULT_HEAD == 32);

/// Bytes of an outcome's header (tag and length).
pub(crate) const OUTCOME_HEAD: usize = 5;

/// Outcome tags.
pub(crate) mod tag {
    /// The result, postcard.
    pub(crate) const OK: u8 = 0;
    /// A panic message, UTF-8.
    pub(crate) const PANICKED: u8 = 1;
    /// The result's length, u64 LE: it did not fit a frame.
    pub(crate) const TOO_LARGE: u8 = 2;
    /// A codec error message, UTF-8.
    pub(crate) const CODEC: u8 = 3;
}

/// Reads a task or result head from the front of a frame.
pub(crate) fn read_head<H: bytemuck::Pod>(frame: &[u8]) -> Option<(H, &[u8])> {
    let n = std::mem::size_of::<H>();
    if frame.len() < n {
        return None;
    }
    Some((bytemuck::pod_read_unaligned(&frame[..n]), &frame[n..]))
}

/// One outcome read from a result frame's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome<'b> {
    pub(crate) tag: u8,
    pub(crate) bytes: &'b [u8],
}

/// Splits the next outcome off `body`; `None` if it is truncated or has an
/// unknown tag.
pub(crate) fn next_outcome(body: &[u8]) -> Option<(Outcome<'_>, &[u8])> {
    if body.len() < OUTCOME_HEAD {
        return None;
    }
    let t = body[0];
    if t > tag::CODEC {
        return None;
    }
    let len = u32::from_le_bytes(body[1..5].try_into().expect("4 bytes")) as usize;
    let rest = &body[OUTCOME_HEAD..];
    if rest.len() < len {
        return None;
    }
    Some((
        Outcome {
            tag: t,
            bytes: &rest[..len],
        },
        &rest[len..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_parse_and_reject_truncation() {
        let mut body = vec![
            tag::OK,
            3,
            0,
            0,
            0,
            1,
            2,
            3,
            tag::PANICKED,
            1,
            0,
            0,
            0,
            b'x',
        ];
        let (a, rest) = next_outcome(&body).unwrap();
        assert_eq!((a.tag, a.bytes), (tag::OK, &[1u8, 2, 3][..]));
        let (b, rest) = next_outcome(rest).unwrap();
        assert_eq!((b.tag, b.bytes), (tag::PANICKED, &b"x"[..]));
        assert!(rest.is_empty());
        body.truncate(7);
        assert!(next_outcome(&body).is_none());
        assert!(next_outcome(&[9, 0, 0, 0, 0]).is_none());
    }

    #[test]
    fn geometry_limits() {
        assert!(Geometry::new(0, 1 << 20).is_err());
        assert!(Geometry::new(MAX_WORKERS + 1, 1 << 20).is_err());
        assert!(Geometry::new(2, 1000).is_err());
        assert!(Geometry::new(2, 256).is_err());
        let g = Geometry::new(2, 1 << 20).unwrap();
        assert_eq!(g.max_frame, (1 << 19) - 8);
        assert!(g.size() > 4 << 20);
    }
}
