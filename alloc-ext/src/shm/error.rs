//! The errors of shared memory segments: [`ShmError`], and [`NameError`]
//! for a name that cannot be a segment's.

use std::fmt;
use std::io;

/// Why a name is not a valid shm name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// Nothing after the optional leading `/`.
    Empty,
    /// Longer than the system allows (leading `/` included).
    TooLong {
        /// Length of the name with its leading `/`.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
    /// A `/` after the leading one.
    InnerSlash,
    /// A NUL byte.
    Nul,
    /// `.` or `..`, which name directories.
    Dot,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("name is empty"),
            NameError::TooLong { len, max } => {
                write!(f, "name is {len} bytes long, at most {max} allowed")
            }
            NameError::InnerSlash => f.write_str("name contains '/' after the leading one"),
            NameError::Nul => f.write_str("name contains a NUL byte"),
            NameError::Dot => f.write_str("name is '.' or '..'"),
        }
    }
}

/// Errors of [`SharedMemory`](super::SharedMemory) operations.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShmError {
    /// The name is not a valid shm name.
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// `create`: a segment of this name exists.
    AlreadyExists {
        /// The name (with its leading `/`).
        name: String,
    },
    /// `open`: no segment of this name exists.
    NotFound {
        /// The name (with its leading `/`).
        name: String,
    },
    /// A size of zero was asked for, or the segment opened has size zero
    /// (its creator may not have sized it yet).
    ZeroSize,
    /// The size does not fit this platform's address space or file offsets.
    TooLarge {
        /// The size asked for.
        size: u64,
    },
    /// Not enough room for a segment of this size: `/dev/shm` (or the
    /// mount the named segment lives in) has less space left, or, for an
    /// anonymous segment, the machine has less memory. Nothing is left
    /// behind: a named segment's name is removed again.
    NoSpace {
        /// The size asked for.
        requested: u64,
        /// Bytes still free where the segment was to live, when known
        /// (the mount's free space at the time of the failure).
        available: Option<u64>,
    },
    /// `open` with a minimum size: the segment is smaller.
    SizeMismatch {
        /// The name (with its leading `/`).
        name: String,
        /// The size asked for.
        expected: u64,
        /// The segment's size.
        actual: u64,
    },
    /// `open_or_create` found the segment already there, owned by another
    /// user: it may have been planted to be written or read by this
    /// process, so it is refused (closed, never unlinked).
    ForeignOwner {
        /// The name (with its leading `/`).
        name: String,
        /// Its owner.
        uid: u32,
    },
    /// `open_or_create` found the segment already there with permission
    /// bits wider than [`ShmOptions::mode`](super::ShmOptions::mode):
    /// refused (closed, never unlinked), since others may read or write it.
    ModeTooWide {
        /// The name (with its leading `/`).
        name: String,
        /// Its permission bits.
        mode: u32,
        /// The permission bits asked for.
        requested: u32,
    },
    /// The operation needs a named segment (this one is anonymous).
    Anonymous,
    /// `read_at`/`write_at` outside the mapping.
    OutOfBounds {
        /// Offset asked for.
        offset: usize,
        /// Bytes asked for.
        len: usize,
        /// Size of the mapping.
        size: usize,
    },
    /// Another system error.
    Io {
        /// The failing operation (`"shm_open"`, `"mmap"`, ...).
        op: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for ShmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShmError::InvalidName { name, reason } => {
                write!(f, "invalid shared memory name {name:?}: {reason}")
            }
            ShmError::AlreadyExists { name } => {
                write!(f, "shared memory segment {name:?} already exists")
            }
            ShmError::NotFound { name } => write!(f, "no shared memory segment {name:?}"),
            ShmError::ZeroSize => f.write_str("shared memory segment of size zero"),
            ShmError::TooLarge { size } => write!(f, "shared memory size {size} is too large"),
            ShmError::NoSpace {
                requested,
                available: Some(free),
            } => write!(
                f,
                "no room for {requested} bytes of shared memory ({free} bytes free)"
            ),
            ShmError::NoSpace {
                requested,
                available: None,
            } => write!(f, "no room for {requested} bytes of shared memory"),
            ShmError::SizeMismatch {
                name,
                expected,
                actual,
            } => write!(
                f,
                "shared memory segment {name:?} has {actual} bytes, {expected} expected"
            ),
            ShmError::ForeignOwner { name, uid } => write!(
                f,
                "shared memory segment {name:?} belongs to another user (uid {uid})"
            ),
            ShmError::ModeTooWide {
                name,
                mode,
                requested,
            } => write!(
                f,
                "shared memory segment {name:?} has mode {mode:03o}, wider than the {requested:03o} asked for"
            ),
            ShmError::Anonymous => f.write_str("anonymous shared memory has no name"),
            ShmError::OutOfBounds { offset, len, size } => write!(
                f,
                "range {offset}..{offset}+{len} outside shared memory of {size} bytes"
            ),
            ShmError::Io { op, source } => write!(f, "{op}: {source}"),
        }
    }
}

impl std::error::Error for ShmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShmError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub(super) fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> ShmError {
    move |source| ShmError::Io { op, source }
}

/// Whether `e` says that a segment of the size asked for does not fit.
pub(super) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EFBIG) | Some(libc::ENOMEM)
    )
}
