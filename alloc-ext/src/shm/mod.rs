//! Shared memory segments: anonymous (inherited across `fork`) and named
//! (`shm_open`), the memory every shared structure lives in.
//!
//! ```text
//!  SharedMemory::create("/jobs", n)          SharedMemory::open("/jobs")
//!  (creator: unlinks the name on drop)       (opener: never unlinks)
//!        |                                          |
//!        v                                          v
//!  shm_open(O_CREAT|O_EXCL, 0600)           shm_open(O_RDWR), fstat
//!  ftruncate(n), fallocate(n)               mmap(MAP_SHARED, st_size)
//!  mmap(MAP_SHARED)                                 |
//!        \______________ same pages _______________/
//! ```
//!
//! | who | on drop | name |
//! |---|---|---|
//! | creator (`create`, `create_unique`, the creating side of `open_or_create`) | unmaps; unlinks the name unless [`SharedMemory::set_persist`] or it was already unlinked; only in the creating process (a forked copy never unlinks) | kept |
//! | opener (`open`, `open_raw`) | unmaps | kept |
//! | anonymous | unmaps | none |
//!
//! # Names
//!
//! A name is a POSIX shm name: `/` then up to 255 bytes (31 on macOS) with
//! no further `/`, no NUL, not `.` or `..`. The leading `/` may be left out,
//! as Python's `multiprocessing.shared_memory` does: `"psm_1a2b"` and
//! `"/psm_1a2b"` name the same segment, and [`SharedMemory::name`] always
//! gives the `/` form, [`SharedMemory::python_name`] the form without it.
//! Names this crate generates ([`SharedMemory::create_unique`]) look like
//! `/mp-<creator pid>-<its start time>-<its pid namespace>-<counter>-<random>`,
//! so [`cleanup_leaked`] can find the segments of processes that died before
//! unlinking them.
//!
//! # Who holds a segment
//!
//! Every handle of a named segment (created or opened) holds a shared
//! `flock` on the segment, taken before it maps it. The lock belongs to
//! the open file description, which the mapping keeps referenced after
//! the descriptor is closed, so it lasts exactly as long as the mapping:
//! until the handle is dropped, in every forked child that inherited the
//! mapping too, and it is dropped by the kernel when the process dies,
//! whatever killed it. Processes in other pid namespaces (containers that
//! share `/dev/shm`) hold it alike. [`cleanup_leaked`] removes a name only
//! when it can take the lock exclusively: no process maps the segment
//! through this crate. (A Python process mapping it holds no lock.)
//!
//! # Room, and what a segment costs
//!
//! A named segment lives in `/dev/shm`, a tmpfs of bounded size. Writing a
//! page that no longer fits there raises `SIGBUS` in the writing process,
//! which cannot be handled soundly, so a named segment is *reserved* whole
//! when it is created (`fallocate` after `ftruncate`, Linux): a segment that
//! does not fit is refused with [`ShmError::NoSpace`], its name removed
//! again, and one that was created can be written anywhere. The price:
//! on tmpfs a reservation takes the pages at once. Measured here, reserving
//! 1 GiB takes about 0.25 s and adds 1 GiB to `df /dev/shm` and to the
//! system's `Shmem` (`/proc/meminfo`); it adds nothing to the creating
//! process's RSS until the pages are touched. (Other Unix systems have no
//! such call for shm objects: there nothing is reserved.)
//!
//! An [anonymous](SharedMemory::anonymous) segment does not live in
//! `/dev/shm` and is not reserved: its pages take memory only as they are
//! first touched, so a large one is cheap until used (the queues and pipes
//! build their rings without touching the slots). Its limit is the
//! machine's memory: a size beyond memory plus swap is refused with
//! [`ShmError::NoSpace`]; a machine that runs out later has the OOM killer
//! choose a process, as for any memory.
//!
//! # Truncation
//!
//! Cutting a segment's size (`ftruncate`) while processes map it makes
//! their next access to the cut pages raise `SIGBUS`. Anonymous segments
//! are sealed memfds on Linux (`F_SEAL_SHRINK | F_SEAL_GROW`): nobody can
//! change their size, not even root through `/proc/<pid>/map_files`. A
//! named segment cannot be sealed (POSIX shm objects do not take seals):
//! any process with write access to the name (by default only its owner's
//! user: mode 0600) can `shm_open` and truncate it, and so kill every
//! process that uses it. That is the residual risk of named segments;
//! give them to processes you trust, with a mode no wider than needed.
//!
//! # Access
//!
//! Another process may write the memory at any time, so handing out `&[u8]`
//! would be unsound. Bytes are copied in and out with
//! [`read_at`](SharedMemory::read_at) / [`write_at`](SharedMemory::write_at)
//! (volatile copies: a concurrent writer elsewhere makes the bytes read a
//! mix of old and new, never undefined behaviour in this process), and
//! structures are built in [`region`](SharedMemory::region) with
//! `multiproc_core`, whose every shared field is an atomic.
//!
//! # Examples
//!
//! ```
//! use multiproc::shm::SharedMemory;
//!
//! let mut a = SharedMemory::create_unique(4096)?;
//! let mut b = SharedMemory::open(a.name().unwrap())?;
//! a.write_at(0, b"hello")?;
//! let mut buf = [0u8; 5];
//! b.read_at(0, &mut buf)?;
//! assert_eq!(&buf, b"hello");
//! drop(b);
//! drop(a); // the creator unlinks the name
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::hash_map::RandomState;
use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc_core::identity::Identity;
use multiproc_core::region::{AttachError, InitError, Kind, Region, RegionHeader};
use multiproc_core::time::Deadline;

use crate::sys;

mod error;

use error::{io_err, is_no_space};
pub use error::{NameError, ShmError};

/// Prefix of the names [`SharedMemory::create_unique`] generates.
pub const GENERATED_PREFIX: &str = "/mp-";

/// Default permission bits of created segments: owner read/write only.
pub const DEFAULT_MODE: u32 = 0o600;

/// Reserves the `size` bytes of a new segment's object `file` (see
/// [`sys::reserve`]): [`ShmError::NoSpace`] if they do not fit. A file
/// system that cannot reserve (`EOPNOTSUPP`) is used unreserved.
fn reserve(file: &File, size: u64) -> Result<(), ShmError> {
    match sys::reserve(file.as_fd(), size) {
        Ok(()) => Ok(()),
        Err(e) if is_no_space(&e) => Err(ShmError::NoSpace {
            requested: size,
            available: free_space(file),
        }),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
        Err(e) => Err(ShmError::Io {
            op: "fallocate",
            source: e,
        }),
    }
}

/// Bytes free (for unprivileged users) in the file system of `file`.
fn free_space(file: &File) -> Option<u64> {
    use std::os::fd::AsRawFd;
    // SAFETY: statvfs is plain data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor we hold and a valid out-pointer.
    let r = unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) };
    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    (r == 0).then(|| (st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// A validated shm name: the `/` form as text and as a C string.
#[derive(Clone)]
struct ShmName {
    text: String,
    c: CString,
}

impl ShmName {
    fn parse(name: &str) -> Result<Self, ShmError> {
        let bad = |reason| ShmError::InvalidName {
            name: name.to_owned(),
            reason,
        };
        let bare = name.strip_prefix('/').unwrap_or(name);
        if bare.is_empty() {
            return Err(bad(NameError::Empty));
        }
        if bare.contains('\0') {
            return Err(bad(NameError::Nul));
        }
        if bare.contains('/') {
            return Err(bad(NameError::InnerSlash));
        }
        if bare == "." || bare == ".." {
            return Err(bad(NameError::Dot));
        }
        let len = bare.len() + 1;
        if len > sys::SHM_NAME_MAX {
            return Err(bad(NameError::TooLong {
                len,
                max: sys::SHM_NAME_MAX,
            }));
        }
        let text = format!("/{bare}");
        let c = CString::new(text.clone()).map_err(|_| bad(NameError::Nul))?;
        Ok(Self { text, c })
    }
}

/// Validates `name` as every constructor does before any system call: the
/// `/name` form and its C string's bytes (for `crate::fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse_name(name: &str) -> Result<(String, Vec<u8>), ShmError> {
    ShmName::parse(name).map(|n| (n.text, n.c.into_bytes()))
}

/// Options for creating or opening a named segment.
///
/// # Examples
///
/// ```
/// use multiproc::shm::ShmOptions;
///
/// let seg = ShmOptions::new().size(1 << 16).mode(0o640).create_unique()?;
/// assert_eq!(seg.len(), 1 << 16);
/// # Ok::<(), multiproc::shm::ShmError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ShmOptions {
    size: usize,
    mode: u32,
    persist: bool,
}

impl Default for ShmOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ShmOptions {
    /// Size 0 (must be set to create), mode 0600, unlinked by the creator
    /// on drop.
    pub fn new() -> Self {
        Self {
            size: 0,
            mode: DEFAULT_MODE,
            persist: false,
        }
    }

    /// The size to create with; for `open`, the minimum size expected.
    #[must_use]
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    /// Permission bits of a created segment (set exactly, whatever the
    /// umask). Default [`DEFAULT_MODE`].
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// Whether the creator leaves the name in place on drop.
    #[must_use]
    pub fn persist(mut self, persist: bool) -> Self {
        self.persist = persist;
        self
    }

    /// Creates a new segment of [`size`](Self::size) bytes, zero-filled,
    /// and reserves its room in `/dev/shm` (see the [module
    /// docs](self#room-and-what-a-segment-costs)).
    ///
    /// # Errors
    ///
    /// [`ShmError::InvalidName`], [`ShmError::ZeroSize`],
    /// [`ShmError::AlreadyExists`], [`ShmError::NoSpace`] if `/dev/shm`
    /// has no room for it (nothing is left behind), or [`ShmError::Io`].
    pub fn create(&self, name: &str) -> Result<SharedMemory, ShmError> {
        let name = ShmName::parse(name)?;
        self.create_named(name)
    }

    /// Creates a segment under a fresh generated name
    /// (`/mp-<pid>-<counter>-<random>`).
    ///
    /// # Errors
    ///
    /// [`ShmError::ZeroSize`], [`ShmError::NoSpace`] or [`ShmError::Io`].
    pub fn create_unique(&self) -> Result<SharedMemory, ShmError> {
        for _ in 0..16 {
            let name = ShmName::parse(&generate_name())?;
            match self.create_named(name) {
                Err(ShmError::AlreadyExists { .. }) => continue,
                other => return other,
            }
        }
        Err(ShmError::Io {
            op: "shm_open",
            source: io::Error::from(io::ErrorKind::AlreadyExists),
        })
    }

    /// Opens an existing segment and maps all of it.
    ///
    /// Whoever owns it and whatever its mode: as Python's
    /// `shared_memory.SharedMemory(name)`, this opens any segment the
    /// system lets this process open read-write (a segment shared on
    /// purpose between users, or made by Python, included). To refuse a
    /// segment planted by someone else, use
    /// [`open_or_create`](Self::open_or_create).
    ///
    /// # Errors
    ///
    /// [`ShmError::InvalidName`], [`ShmError::NotFound`],
    /// [`ShmError::ZeroSize`] if it has size zero,
    /// [`ShmError::SizeMismatch`] if it is smaller than
    /// [`size`](Self::size), or [`ShmError::Io`].
    pub fn open(&self, name: &str) -> Result<SharedMemory, ShmError> {
        let name = ShmName::parse(name)?;
        self.open_named(name, false)
    }

    /// Opens the segment if it exists, else creates it; see
    /// [`SharedMemory::is_owner`] for which happened. When another process
    /// is creating it at the same moment, waits up to 100 ms for it to reach
    /// its size.
    ///
    /// A segment that is already there is opened only if it belongs to this
    /// process's effective user and its permission bits are within
    /// [`mode`](Self::mode): another user could otherwise pre-create the
    /// name with mode 0666 and read or write what this process believes
    /// is its own.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create) and [`open`](Self::open);
    /// [`ShmError::ForeignOwner`] or [`ShmError::ModeTooWide`] for a
    /// segment that is there but not this user's as asked (it is left
    /// alone: closed, not unlinked).
    pub fn open_or_create(&self, name: &str) -> Result<SharedMemory, ShmError> {
        let name = ShmName::parse(name)?;
        if self.size == 0 {
            return Err(ShmError::ZeroSize);
        }
        let until = Instant::now() + Duration::from_millis(100);
        loop {
            match self.create_named(name.clone()) {
                Err(ShmError::AlreadyExists { .. }) => {}
                other => return other,
            }
            match self.open_named(name.clone(), true) {
                // Unlinked in between, or not sized yet by its creator.
                Err(ShmError::NotFound { .. })
                | Err(ShmError::ZeroSize)
                | Err(ShmError::SizeMismatch { .. })
                    if Instant::now() < until =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                other => return other,
            }
        }
    }

    fn create_named(&self, name: ShmName) -> Result<SharedMemory, ShmError> {
        if self.size == 0 {
            return Err(ShmError::ZeroSize);
        }
        let size = self.size;
        if size > isize::MAX as usize || i64::try_from(size).is_err() {
            return Err(ShmError::TooLarge { size: size as u64 });
        }
        let fd = sys::shm_open(
            &name.c,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            self.mode,
        )
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => ShmError::AlreadyExists {
                name: name.text.clone(),
            },
            _ => ShmError::Io {
                op: "shm_open",
                source: e,
            },
        })?;
        // From here on the name exists: remove it again on any failure.
        let unlink_on_err = |e: ShmError| {
            let _ = sys::shm_unlink(&name.c);
            e
        };
        let file = File::from(fd);
        // Held from before the segment is sized (see "Who holds a segment").
        // A cleanup that took its exclusive lock first (only possible for a
        // generated name, in the instant between our create and this lock)
        // may have removed the name: as if it had been taken.
        if !lock_shared(&file).map_err(unlink_on_err)? {
            return Err(ShmError::AlreadyExists { name: name.text });
        }
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(self.mode))
            .map_err(io_err("fchmod"))
            .map_err(unlink_on_err)?;
        file.set_len(size as u64)
            .map_err(|e| {
                if is_no_space(&e) {
                    ShmError::NoSpace {
                        requested: size as u64,
                        available: free_space(&file),
                    }
                } else {
                    io_err("ftruncate")(e)
                }
            })
            .map_err(unlink_on_err)?;
        // Take the pages now: on tmpfs, a write to a page that no longer
        // fits raises SIGBUS in whichever process makes it, and cannot be
        // handled soundly. With the pages reserved, no write ever can.
        reserve(&file, size as u64).map_err(unlink_on_err)?;
        let meta = file
            .metadata()
            .map_err(io_err("fstat"))
            .map_err(unlink_on_err)?;
        let map = sys::Mapping::of_fd(file.as_fd(), size)
            .map_err(io_err("mmap"))
            .map_err(unlink_on_err)?;
        Ok(SharedMemory {
            map,
            len: size,
            name: Some(name),
            creator: Some(Creator {
                pid: sys::getpid(),
                object: (meta.dev(), meta.ino()),
            }),
            persist: self.persist,
            unlinked: AtomicBool::new(false),
        })
    }

    /// Opens and maps `name`; with `own_only`, only a segment of this
    /// process's effective user whose mode is within `self.mode`.
    fn open_named(&self, name: ShmName, own_only: bool) -> Result<SharedMemory, ShmError> {
        let fd: OwnedFd = sys::shm_open(&name.c, libc::O_RDWR, 0).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ShmError::NotFound {
                name: name.text.clone(),
            },
            _ => ShmError::Io {
                op: "shm_open",
                source: e,
            },
        })?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(io_err("fstat"))?;
        if own_only {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = unsafe { libc::geteuid() };
            if meta.uid() != me {
                return Err(ShmError::ForeignOwner {
                    name: name.text,
                    uid: meta.uid(),
                });
            }
            let mode = meta.mode() & 0o777;
            if mode & !self.mode != 0 {
                return Err(ShmError::ModeTooWide {
                    name: name.text,
                    mode,
                    requested: self.mode,
                });
            }
        }
        // Held before mapping (see "Who holds a segment"); a name removed by
        // a cleanup while we waited for the lock is gone.
        if !lock_shared(&file)? {
            return Err(ShmError::NotFound { name: name.text });
        }
        let actual = meta.len();
        if actual == 0 {
            return Err(ShmError::ZeroSize);
        }
        if actual < self.size as u64 {
            return Err(ShmError::SizeMismatch {
                name: name.text,
                expected: self.size as u64,
                actual,
            });
        }
        let len = usize::try_from(actual)
            .ok()
            .filter(|&l| l <= isize::MAX as usize)
            .ok_or(ShmError::TooLarge { size: actual })?;
        let map = sys::Mapping::of_fd(file.as_fd(), len).map_err(io_err("mmap"))?;
        Ok(SharedMemory {
            map,
            len,
            name: Some(name),
            creator: None,
            persist: true,
            unlinked: AtomicBool::new(false),
        })
    }
}

/// What the creating handle remembers to unlink safely.
#[derive(Debug, Clone, Copy)]
struct Creator {
    /// The process that created the segment (a forked copy of the handle
    /// must not unlink the name from under it).
    pid: u32,
    /// `(st_dev, st_ino)` of the object created: the name is unlinked on
    /// drop only while it still names this object, not one that somebody
    /// made under the same name after an unlink.
    object: (u64, u64),
}

/// Whether `name` still names the object `(dev, ino)`. When that cannot
/// be checked (a mode that forbids even the owner to read), assumes it
/// does, as it almost always will.
fn names_object(name: &ShmName, object: (u64, u64)) -> bool {
    match sys::shm_open(&name.c, libc::O_RDONLY, 0) {
        Ok(fd) => File::from(fd)
            .metadata()
            .map_or(true, |m| (m.dev(), m.ino()) == object),
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// Takes the shared `flock` of a handle on `file` (blocking: an
/// exclusive holder is a [`cleanup_leaked`] that holds it for one unlink).
/// Returns whether the object still has a name; `false` if a cleanup
/// removed it before we got the lock.
fn lock_shared(file: &File) -> Result<bool, ShmError> {
    sys::flock(file.as_fd(), libc::LOCK_SH).map_err(io_err("flock"))?;
    Ok(file.metadata().map_err(io_err("fstat"))?.nlink() > 0)
}

fn generate_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Relaxed: only uniqueness within this process matters.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded from the OS's random source once per process
    // and varied per instance: enough to make names unguessable-ish and
    // unique across pid reuse.
    let mut h = RandomState::new().build_hasher();
    h.write_u64(n);
    let me = Identity::current();
    let start = me
        .start_ticks()
        .map_or_else(|| "u".to_owned(), |t| t.to_string());
    let ns = multiproc_core::identity::pid_namespace().unwrap_or(0);
    format!(
        "{GENERATED_PREFIX}{}-{start}-{ns}-{n}-{:016x}",
        me.pid(),
        h.finish()
    )
}

/// A mapped shared memory segment.
///
/// Not `Clone`: a second handle to the same segment is another
/// [`open`](Self::open) (or, in a forked child, the inherited copy of this
/// one, which never unlinks the name).
pub struct SharedMemory {
    /// The mapping, unmapped when the handle drops (after the name is
    /// unlinked, if it is).
    map: sys::Mapping,
    len: usize,
    name: Option<ShmName>,
    /// Set for the handle that created the name.
    creator: Option<Creator>,
    persist: bool,
    unlinked: AtomicBool,
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name())
            .field("len", &self.len)
            .field("owner", &self.is_owner())
            .field("persist", &self.persist)
            .finish()
    }
}

impl SharedMemory {
    /// Anonymous shared memory of `size` zeroed bytes, shared with children
    /// forked after this call. It has no name: processes started with
    /// `spawn` or `forkserver` cannot reach it.
    ///
    /// On Linux it is a memfd sealed against shrinking and growing
    /// (`F_SEAL_SHRINK | F_SEAL_GROW`), mapped and closed at once: even a
    /// process that reaches the mapping's file (through
    /// `/proc/<pid>/map_files`, which takes `CAP_SYS_ADMIN`) cannot
    /// truncate it, which would make every access to the cut pages raise
    /// `SIGBUS`. Elsewhere it is `mmap(MAP_SHARED | MAP_ANONYMOUS)`, which
    /// no descriptor names.
    ///
    /// Pages take memory only once touched: a large segment costs little
    /// until used. It is not counted against `/dev/shm`'s size (the kernel
    /// keeps it on an internal mount without a limit), so it cannot run out
    /// of room there; like any memory, using more than the machine has
    /// wakes the OOM killer. A size beyond the machine's memory plus swap
    /// is refused at once ([`ShmError::NoSpace`]).
    ///
    /// # Errors
    ///
    /// [`ShmError::ZeroSize`], [`ShmError::TooLarge`],
    /// [`ShmError::NoSpace`] or [`ShmError::Io`].
    pub fn anonymous(size: usize) -> Result<Self, ShmError> {
        if size == 0 {
            return Err(ShmError::ZeroSize);
        }
        if size > isize::MAX as usize || i64::try_from(size).is_err() {
            return Err(ShmError::TooLarge { size: size as u64 });
        }
        let no_space = |op| {
            move |e: io::Error| {
                if is_no_space(&e) {
                    ShmError::NoSpace {
                        requested: size as u64,
                        available: None,
                    }
                } else {
                    ShmError::Io { op, source: e }
                }
            }
        };
        let memfd = sys::sealed_memfd(size).map_err(no_space("memfd_create"))?;
        // The memfd (if any) is closed at the end of this function: the
        // mapping keeps the memory alive, and no descriptor lingers.
        let map = match &memfd {
            Some(fd) => sys::Mapping::of_fd(fd.as_fd(), size),
            None => sys::Mapping::anonymous(size),
        }
        .map_err(no_space("mmap"))?;
        Ok(Self {
            map,
            len: size,
            name: None,
            creator: None,
            persist: true,
            unlinked: AtomicBool::new(false),
        })
    }

    /// Creates the named segment `name` of `size` bytes, mode 0600; this
    /// handle unlinks the name on drop. See [`ShmOptions`] for more control.
    ///
    /// # Errors
    ///
    /// [`ShmError::InvalidName`], [`ShmError::ZeroSize`],
    /// [`ShmError::AlreadyExists`], [`ShmError::NoSpace`] or
    /// [`ShmError::Io`].
    pub fn create(name: &str, size: usize) -> Result<Self, ShmError> {
        ShmOptions::new().size(size).create(name)
    }

    /// Creates a segment under a fresh generated name; see
    /// [`ShmOptions::create_unique`].
    ///
    /// # Errors
    ///
    /// [`ShmError::ZeroSize`], [`ShmError::NoSpace`] or [`ShmError::Io`].
    pub fn create_unique(size: usize) -> Result<Self, ShmError> {
        ShmOptions::new().size(size).create_unique()
    }

    /// Opens the existing segment `name` and maps all of it.
    ///
    /// # Errors
    ///
    /// [`ShmError::InvalidName`], [`ShmError::NotFound`],
    /// [`ShmError::ZeroSize`] or [`ShmError::Io`].
    pub fn open(name: &str) -> Result<Self, ShmError> {
        ShmOptions::new().open(name)
    }

    /// Opens a segment this crate did not make, such as one created by
    /// Python's `multiprocessing.shared_memory.SharedMemory(create=True)`,
    /// by its Python name (`"psm_..."`, no leading `/`; the `/` form works
    /// too). Same as [`open`](Self::open): segments are plain `shm_open`
    /// objects on both sides; the name documents the intent.
    ///
    /// Python maps the segment's whole size, which on Linux is the size
    /// it was created with; so does this.
    ///
    /// In the other direction, a Python process that attaches to a segment
    /// made here with `SharedMemory(name=...)` registers it with its
    /// resource tracker (Python 3.11 and 3.12), which unlinks it when that
    /// Python process exits. Have the Python side call
    /// `multiprocessing.resource_tracker.unregister(shm._name, "shared_memory")`
    /// after attaching (or pass `track=False` from Python 3.13 on).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_raw(name: &str) -> Result<Self, ShmError> {
        Self::open(name)
    }

    /// Opens `name` if it exists, else creates it with `size` bytes.
    ///
    /// # Errors
    ///
    /// As [`ShmOptions::open_or_create`].
    pub fn open_or_create(name: &str, size: usize) -> Result<Self, ShmError> {
        ShmOptions::new().size(size).open_or_create(name)
    }

    /// Removes the name `name` (mappings stay valid until unmapped).
    ///
    /// # Errors
    ///
    /// [`ShmError::InvalidName`], [`ShmError::NotFound`] or [`ShmError::Io`].
    pub fn unlink_name(name: &str) -> Result<(), ShmError> {
        let name = ShmName::parse(name)?;
        sys::shm_unlink(&name.c).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ShmError::NotFound { name: name.text },
            _ => ShmError::Io {
                op: "shm_unlink",
                source: e,
            },
        })
    }

    /// The name, with its leading `/` (`None` when anonymous).
    pub fn name(&self) -> Option<&str> {
        self.name.as_ref().map(|n| n.text.as_str())
    }

    /// The name as Python's `SharedMemory(name=...)` takes it: without the
    /// leading `/`.
    pub fn python_name(&self) -> Option<&str> {
        self.name.as_ref().map(|n| &n.text[1..])
    }

    /// Size of the mapping in bytes (never zero).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Start of the mapping: page-aligned, valid for [`len`](Self::len)
    /// bytes while `self` lives. Other processes may write it at any time.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.ptr().as_ptr()
    }

    /// Whether this handle created the name and will unlink it on drop
    /// (in this process, unless persisted).
    pub fn is_owner(&self) -> bool {
        self.creator.is_some()
    }

    /// Keeps the name after this (creating) handle is dropped.
    pub fn persist(&mut self) {
        self.persist = true;
    }

    /// Chooses whether the creating handle unlinks the name on drop.
    pub fn set_persist(&mut self, persist: bool) {
        self.persist = persist;
    }

    /// Removes the name now; mappings (this one included) stay valid.
    /// Later `open`s fail, and drop does not unlink again.
    ///
    /// # Errors
    ///
    /// [`ShmError::Anonymous`], [`ShmError::NotFound`] (already unlinked,
    /// by anyone) or [`ShmError::Io`].
    pub fn unlink(&self) -> Result<(), ShmError> {
        let name = self.name.as_ref().ok_or(ShmError::Anonymous)?;
        // Relaxed: the flag only stops our own Drop from unlinking twice.
        self.unlinked.store(true, Ordering::Relaxed);
        sys::shm_unlink(&name.c).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ShmError::NotFound {
                name: name.text.clone(),
            },
            _ => ShmError::Io {
                op: "shm_unlink",
                source: e,
            },
        })
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<(), ShmError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(ShmError::OutOfBounds {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    /// Copies `buf.len()` bytes at `offset` out of the segment.
    ///
    /// Takes `&mut self` so that no structure of this process lives in the
    /// segment meanwhile (those borrow it through [`region`](Self::region));
    /// other processes may still write: the copy is volatile and the bytes
    /// are then a mix of old and new.
    ///
    /// # Errors
    ///
    /// [`ShmError::OutOfBounds`] if the range leaves the mapping.
    pub fn read_at(&mut self, offset: usize, buf: &mut [u8]) -> Result<(), ShmError> {
        self.check_range(offset, buf.len())?;
        // SAFETY: the range is inside the mapping (checked), which is live
        // while `self` is; `&mut self` excludes other accesses from this
        // process; `buf` is a distinct, exclusively borrowed buffer.
        unsafe {
            volatile_copy(
                self.map.ptr().as_ptr().add(offset),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }

    /// Copies `data` into the segment at `offset`.
    ///
    /// # Errors
    ///
    /// [`ShmError::OutOfBounds`] if the range leaves the mapping.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> Result<(), ShmError> {
        self.check_range(offset, data.len())?;
        // SAFETY: as in `read_at`, with the roles of the buffers swapped.
        unsafe {
            volatile_copy(
                data.as_ptr(),
                self.map.ptr().as_ptr().add(offset),
                data.len(),
            )
        };
        Ok(())
    }

    /// The whole mapping as a byte slice.
    ///
    /// # Safety
    ///
    /// For as long as the slice lives, no process (this one or another)
    /// writes the segment.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is live and `len` bytes long while `self` is;
        // the caller guarantees nobody writes it meanwhile.
        unsafe { std::slice::from_raw_parts(self.map.ptr().as_ptr(), self.len) }
    }

    /// The whole mapping as a mutable byte slice.
    ///
    /// # Safety
    ///
    /// For as long as the slice lives, no other process reads or writes the
    /// segment.
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` excludes this process's
        // other accesses, the caller excludes other processes.
        unsafe { std::slice::from_raw_parts_mut(self.map.ptr().as_ptr(), self.len) }
    }

    /// The mapping as a region in which a `multiproc_core` structure is
    /// built (`Foo::create(shm.region(), ..)`) or found
    /// (`Foo::attach(shm.region())`). The mapping is page-aligned, hence
    /// 128-aligned as regions need.
    pub fn region(&self) -> Region<'_> {
        // SAFETY: the mapping is valid for `len` bytes for as long as `self`
        // is borrowed; in this process the memory is otherwise reached only
        // through `&mut self` methods (excluded while the region borrows
        // `self`) and raw pointers whose users take that responsibility.
        unsafe { Region::from_raw_parts(self.map.ptr(), self.len) }
    }

    /// The region header at the start of the segment. Reading it is sound
    /// whatever the segment holds (its fields are atomics).
    ///
    /// # Errors
    ///
    /// [`AttachError::TooSmall`] for a segment smaller than a header.
    pub fn header(&self) -> Result<&RegionHeader, AttachError> {
        self.region().header()
    }

    /// Builds a structure in the segment: `create` receives the region and
    /// is typically `|r| Foo::create(r, capacity)`.
    ///
    /// # Errors
    ///
    /// Whatever `create` returns, such as [`InitError::TooSmall`] or
    /// [`InitError::AlreadyInitialized`].
    pub fn create_in<'a, T>(
        &'a self,
        create: impl FnOnce(Region<'a>) -> Result<T, InitError>,
    ) -> Result<T, InitError> {
        create(self.region())
    }

    /// Finds the structure of kind `kind` in the segment: checks that the
    /// header is published, names `kind`, and describes a structure that
    /// fits the mapping, then calls `attach` (typically `Foo::attach`),
    /// which validates the rest (magic, version, element type, capacity).
    ///
    /// # Errors
    ///
    /// [`AttachError::NotReady`] if the creator has not published the
    /// header, [`AttachError::CreatorDied`] if it died before publishing
    /// it, [`AttachError::KindMismatch`], [`AttachError::TooSmall`], or
    /// what `attach` returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::raw::region::Kind;
    /// use multiproc::raw::value::AtomicValue;
    /// use multiproc::shm::SharedMemory;
    ///
    /// let size = AtomicValue::<u64>::memory_size().unwrap();
    /// let a = SharedMemory::create_unique(size)?;
    /// let mine = a.create_in(|r| AtomicValue::<u64>::create(r, 7))?;
    ///
    /// // Typically in another process:
    /// let b = SharedMemory::open(a.name().unwrap())?;
    /// let theirs = b.attach_in(Kind::AtomicValue, AtomicValue::<u64>::attach)?;
    /// theirs.fetch_add(1);
    /// assert_eq!(mine.load(), 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attach_in<'a, T>(
        &'a self,
        kind: Kind,
        attach: impl FnOnce(Region<'a>) -> Result<T, AttachError>,
    ) -> Result<T, AttachError> {
        self.attach_in_timeout(kind, Duration::ZERO, attach)
    }

    /// Like [`attach_in`](Self::attach_in), waiting up to `timeout` for the
    /// creator (maybe another process) to publish the header.
    ///
    /// # Errors
    ///
    /// As [`attach_in`](Self::attach_in).
    pub fn attach_in_timeout<'a, T>(
        &'a self,
        kind: Kind,
        timeout: Duration,
        attach: impl FnOnce(Region<'a>) -> Result<T, AttachError>,
    ) -> Result<T, AttachError> {
        let region = self.region();
        let header = region.header()?;
        header.wait_ready(Some(Deadline::after(timeout)))?;
        if let Some(found) = header.kind() {
            if found != kind {
                return Err(AttachError::KindMismatch {
                    found: found as u32,
                    expected: kind,
                });
            }
        }
        let total = header.total_size();
        if total > self.len as u64 {
            return Err(AttachError::TooSmall {
                needed: total,
                available: self.len as u64,
            });
        }
        attach(region)
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // `self.map` is unmapped after this body: `&mut self` means no
        // Region or slice borrowed from it is alive.
        if let (Some(name), Some(c)) = (&self.name, self.creator) {
            // Only the creating process unlinks (a forked child's copy of
            // the handle must not pull the name from under its parent), and
            // only the object it created.
            if !self.persist
                && !self.unlinked.load(Ordering::Relaxed)
                && c.pid == sys::getpid()
                && names_object(name, c.object)
            {
                let _ = sys::shm_unlink(&name.c);
            }
        }
    }
}

/// Copies `len` bytes from `src` to `dst`, one of which is shared memory,
/// with volatile accesses (word-sized where both sides allow): the compiler
/// may neither elide them nor assume the shared bytes stay put.
///
/// # Safety
///
/// `src` is valid for reads and `dst` for writes of `len` bytes, and the two
/// ranges do not overlap.
unsafe fn volatile_copy(src: *const u8, dst: *mut u8, len: usize) {
    const W: usize = std::mem::size_of::<usize>();
    let mut i = 0;
    // Bytes until the shared side (whichever) is word-aligned is not
    // knowable here, so align on `dst` and read `src` unaligned: both
    // directions then use aligned volatile stores or loads on one side.
    if (src as usize) % W == (dst as usize) % W {
        while i < len && (dst as usize + i) % W != 0 {
            // SAFETY: i < len, in bounds of both ranges.
            unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
            i += 1;
        }
        while i + W <= len {
            // SAFETY: in bounds; both pointers are word-aligned here since
            // they share their alignment offset.
            unsafe {
                dst.add(i)
                    .cast::<usize>()
                    .write_volatile(src.add(i).cast::<usize>().read_volatile())
            };
            i += W;
        }
    }
    while i < len {
        // SAFETY: i < len, in bounds of both ranges.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        i += 1;
    }
}

/// Removes the segments this crate generated ([`SharedMemory::create_unique`])
/// that nobody holds any more and whose creating process is dead,
/// returning their names.
///
/// A name is removed only when all of these hold:
///
/// - it was generated by this version of the crate (`/mp-<pid>-<start
///   time>-<pid namespace>-...`; names chosen by users, and generated names
///   of earlier versions, are never touched), and belongs to this user;
/// - no process holds the segment: its exclusive `flock` can be taken, so
///   no handle of this crate maps it, in this or any other pid namespace,
///   the creator's included (see the [module docs](self));
/// - its creator was in this pid namespace, and the process named by its
///   pid *and start time* is dead (a reused pid does not keep it). A
///   segment made in another pid namespace is left alone: its creator's
///   liveness cannot be judged from here (it may have dropped its handle
///   and left the name for a process it starts next); run the cleanup in
///   that namespace.
///
/// The name is removed while the exclusive lock is held, so a process
/// opening it at that instant finds it gone ([`ShmError::NotFound`])
/// rather than a segment without a name.
///
/// # Errors
///
/// [`ShmError::Io`] if the segments cannot be listed (on systems other
/// than Linux, where `/dev/shm` does not exist: `Unsupported`).
pub fn cleanup_leaked() -> Result<Vec<String>, ShmError> {
    let names = sys::list_shm_names().map_err(io_err("list /dev/shm"))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let our_ns = multiproc_core::identity::pid_namespace();
    let mut removed = Vec::new();
    for name in names {
        let Some((creator, ns)) = generated_creator(&name) else {
            continue;
        };
        let Ok(shm_name) = ShmName::parse(&name) else {
            continue;
        };
        // Open first, then decide with the lock held: the checks below then
        // hold until the unlink.
        let Ok(fd) = sys::shm_open(&shm_name.c, libc::O_RDONLY, 0) else {
            continue;
        };
        let file = File::from(fd);
        let owned_by_me = file.metadata().is_ok_and(|m| m.uid() == me);
        if !owned_by_me {
            continue;
        }
        if sys::flock(file.as_fd(), libc::LOCK_EX | libc::LOCK_NB).is_err() {
            // Held: some process maps it (or is opening it).
            continue;
        }
        let same_ns = match (ns, our_ns) {
            (Some(theirs), Some(ours)) => theirs == ours,
            // Neither side can read its namespace: no /proc, no namespaces
            // to tell apart; the pid check is all there is.
            (None, None) => true,
            _ => false,
        };
        if !same_ns || creator.is_alive() {
            continue;
        }
        if sys::shm_unlink(&shm_name.c).is_ok() {
            removed.push(name);
        }
        // The exclusive lock goes with `file`.
    }
    Ok(removed)
}

/// The creator encoded in a generated name: its identity, and its pid
/// namespace (`None` if it could not read it).
fn generated_creator(name: &str) -> Option<(Identity, Option<u64>)> {
    let rest = name.strip_prefix(GENERATED_PREFIX)?;
    let mut parts = rest.split('-');
    let pid = parts.next()?.parse::<u32>().ok()?;
    let start = match parts.next()? {
        "u" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    let ns = parts.next()?.parse::<u64>().ok()?;
    let _counter = parts.next()?.parse::<u64>().ok()?;
    let rand = parts.next()?;
    if rand.len() != 16 || !rand.bytes().all(|b| b.is_ascii_hexdigit()) || parts.next().is_some() {
        return None;
    }
    Some((Identity::new(pid, start)?, (ns != 0).then_some(ns)))
}

#[cfg(test)]
mod tests;
