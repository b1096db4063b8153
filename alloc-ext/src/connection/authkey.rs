//! The process's default authentication key (Python's
//! `current_process().authkey`).

use std::io::Read;
use std::sync::{Mutex, PoisonError};

/// Bytes of a generated key (as Python's `os.urandom(32)`).
pub const AUTHKEY_LEN: usize = 32;

static KEY: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// Fills `buf` from the operating system's random source.
///
/// `getrandom(2)` where there is one, else `/dev/urandom`.
///
/// # Panics
///
/// If neither gives bytes: this process cannot make a secret, and going on
/// with a guessable one would be worse.
pub(crate) fn os_random(buf: &mut [u8]) {
    if crate::sys::fill_random(buf).is_ok() {
        return;
    }
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf));
    if let Err(e) = read {
        panic!("multiproc: no random source for an authentication key: {e}");
    }
}

/// The process's authentication key, the one [`Listener`](super::Listener)
/// and [`Client`](super::Client) use unless given another.
///
/// Made on first use from the operating system's random source
/// ([`AUTHKEY_LEN`] bytes), unless [`set_authkey`] set one. Like Python's
/// `current_process().authkey`, it is inherited by children: a `fork`
/// child has a copy of its parent's (whether made before the fork or
/// not: the child of a parent that never made one makes its own); a child
/// started with `spawn` or `forkserver` is sent the key its parent has
/// when it starts it (made then if it had none), over the launch socket
/// (never in argv or the environment), and has it installed before its
/// entry point runs. So a child can connect to its parent's listener with
/// `authkey()`, whatever the start method.
///
/// # Examples
///
/// ```
/// let k = multiproc::connection::authkey();
/// assert_eq!(k.len(), 32);
/// assert_eq!(k, multiproc::connection::authkey());
/// ```
///
/// # Panics
///
/// If the operating system gives no random bytes.
pub fn authkey() -> Vec<u8> {
    let mut g = KEY.lock().unwrap_or_else(PoisonError::into_inner);
    g.get_or_insert_with(|| {
        let mut k = vec![0u8; AUTHKEY_LEN];
        os_random(&mut k);
        k
    })
    .clone()
}

/// Replaces the process's authentication key (Python's
/// `current_process().authkey = key`). Children started afterwards, with
/// any start method, inherit it; children already started, listeners and
/// connections already made keep theirs.
///
/// # Examples
///
/// ```
/// multiproc::connection::set_authkey(b"shared secret");
/// assert_eq!(multiproc::connection::authkey(), b"shared secret");
/// ```
pub fn set_authkey(key: &[u8]) {
    *KEY.lock().unwrap_or_else(PoisonError::into_inner) = Some(key.to_vec());
}
