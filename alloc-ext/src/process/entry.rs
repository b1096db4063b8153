//! Entry points: the named functions a re-executed child (or a fork-server
//! worker) runs, since a closure cannot cross an `exec`.

use std::fmt;
use std::sync::Mutex;

use super::lock;

/// An entry point: receives the argument bytes, returns the exit code.
pub type EntryFn = fn(&[u8]) -> i32;

/// Longest entry point name.
pub const MAX_ENTRY_NAME: usize = 128;

/// Why an entry point could not be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterError {
    /// The name is empty, longer than [`MAX_ENTRY_NAME`], or has a byte
    /// other than ASCII letters, digits and `_ - . : /`.
    InvalidName {
        /// The name given.
        name: String,
    },
    /// Another function is registered under this name.
    Duplicate {
        /// The name given.
        name: String,
    },
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::InvalidName { name } => write!(
                f,
                "invalid entry point name {name:?} (1 to {MAX_ENTRY_NAME} ASCII letters, digits, '_', '-', '.', ':', '/')"
            ),
            RegisterError::Duplicate { name } => {
                write!(f, "another function is registered as entry point {name:?}")
            }
        }
    }
}

impl std::error::Error for RegisterError {}

static ENTRIES: Mutex<Vec<(String, EntryFn)>> = Mutex::new(Vec::new());

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ENTRY_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b))
}

/// Registers `f` as the entry point `name`, for processes started with
/// [`Process::entry`](super::Process::entry).
///
/// Register every entry point *before* calling [`crate::init`] in `main`:
/// a re-executed child looks its entry point up when it reaches `init`.
/// Registering the same function twice is allowed.
///
/// # Errors
///
/// [`RegisterError::InvalidName`] or [`RegisterError::Duplicate`].
pub fn register_entry(name: &str, f: EntryFn) -> Result<(), RegisterError> {
    if !valid_name(name) {
        return Err(RegisterError::InvalidName {
            name: name.to_owned(),
        });
    }
    let mut entries = lock(&ENTRIES);
    match entries.iter().find(|(n, _)| n == name) {
        Some((_, g)) if std::ptr::fn_addr_eq(*g, f) => Ok(()),
        Some(_) => Err(RegisterError::Duplicate {
            name: name.to_owned(),
        }),
        None => {
            entries.push((name.to_owned(), f));
            Ok(())
        }
    }
}

/// The entry point registered as `name`.
pub(crate) fn lookup(name: &str) -> Option<EntryFn> {
    lock(&ENTRIES)
        .iter()
        .find(|(n, _)| n == name)
        .map(|&(_, f)| f)
}

/// Reads a plain-data argument sent with
/// [`Process::entry_pod`](super::Process::entry_pod); `None` if the bytes
/// have another size.
pub fn args_as<T: bytemuck::Pod>(args: &[u8]) -> Option<T> {
    bytemuck::try_pod_read_unaligned(args).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(_: &[u8]) -> i32 {
        1
    }
    fn b(_: &[u8]) -> i32 {
        2
    }

    #[test]
    fn names_and_duplicates() {
        assert!(register_entry("unit-a", a).is_ok());
        assert!(register_entry("unit-a", a).is_ok());
        assert_eq!(
            register_entry("unit-a", b),
            Err(RegisterError::Duplicate {
                name: "unit-a".into()
            })
        );
        for bad in ["", "has space", "nul\0", &"x".repeat(MAX_ENTRY_NAME + 1)] {
            assert!(matches!(
                register_entry(bad, a),
                Err(RegisterError::InvalidName { .. })
            ));
        }
        assert_eq!(lookup("unit-a").map(|f| f(&[])), Some(1));
        assert!(lookup("unit-missing").is_none());
    }

    #[test]
    fn pod_args() {
        let v: u64 = 0x1122_3344_5566_7788;
        assert_eq!(args_as::<u64>(bytemuck::bytes_of(&v)), Some(v));
        assert_eq!(args_as::<u64>(&[1, 2, 3]), None);
    }
}
