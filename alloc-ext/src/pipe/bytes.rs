//! A single-producer single-consumer queue of byte messages of mixed size:
//! a one-way [`Pipe`](super::Pipe) with queue names.

use std::time::Duration;

use super::{Connection, Pipe, PipeError, PipeRecvError, PipeSendError};

/// A queue of byte messages of up to `max_msg` bytes in a ring of
/// `capacity_bytes` bytes (a power of two, at least `2 * (max_msg + 8)`):
/// `(sender, receiver)`.
///
/// Single-producer single-consumer: the handles are not `Clone` (each is
/// one end of a one-way pipe, with its disconnection rules, see
/// [`crate::pipe`](mod@crate::pipe)). For several producers, give each its own channel.
///
/// # Errors
///
/// [`PipeError::InvalidSize`]; [`PipeError::Setup`].
///
/// # Examples
///
/// ```
/// let (mut tx, mut rx) = multiproc::queue::bytes_channel(1 << 12, 1000)?;
/// tx.send(b"short")?;
/// tx.send(&[9u8; 1000])?;
/// assert_eq!(rx.recv()?, b"short");
/// assert_eq!(rx.recv()?.len(), 1000);
/// assert!(tx.send(&[0u8; 1001]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn bytes_channel(
    capacity_bytes: u64,
    max_msg: u64,
) -> Result<(ByteSender, ByteReceiver), PipeError> {
    let (w, r) = Pipe::new()
        .duplex(false)
        .ring_size(capacity_bytes)
        .max_message(max_msg)
        .open()?;
    Ok((ByteSender(w), ByteReceiver(r)))
}

/// The sending handle of [`bytes_channel`].
#[derive(Debug)]
pub struct ByteSender(Connection);

/// The receiving handle of [`bytes_channel`].
#[derive(Debug)]
pub struct ByteReceiver(Connection);

impl ByteSender {
    /// Sends `msg`, waiting for room.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_bytes`].
    pub fn send(&mut self, msg: &[u8]) -> Result<(), PipeSendError> {
        self.0.send_bytes(msg)
    }

    /// Sends `msg`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_bytes_timeout`].
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), PipeSendError> {
        self.0.send_bytes_timeout(msg, timeout)
    }

    /// Writes a message of `len` bytes in place.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_with`].
    pub fn send_with(
        &mut self,
        len: usize,
        f: impl FnOnce(&mut [u8]),
    ) -> Result<(), PipeSendError> {
        self.0.send_with(len, f)
    }

    /// Sends `v` encoded with postcard (`serde` feature).
    ///
    /// # Errors
    ///
    /// As [`Connection::send_serde`].
    #[cfg(feature = "serde")]
    pub fn send_serde<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), PipeSendError> {
        self.0.send_serde(v)
    }

    /// The pipe end underneath.
    pub fn into_inner(self) -> Connection {
        self.0
    }
}

impl ByteReceiver {
    /// Receives the next message, waiting for one.
    ///
    /// # Errors
    ///
    /// As [`Connection::recv_bytes`].
    pub fn recv(&mut self) -> Result<Vec<u8>, PipeRecvError> {
        self.0.recv_bytes()
    }

    /// Receives the next message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Connection::recv_bytes_timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, PipeRecvError> {
        self.0.recv_bytes_timeout(timeout)
    }

    /// Receives the next message into `buf`, returning its length.
    ///
    /// # Errors
    ///
    /// As [`Connection::recv_bytes_into`].
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, PipeRecvError> {
        self.0.recv_bytes_into(buf)
    }

    /// Reads the next message in place.
    ///
    /// # Errors
    ///
    /// As [`Connection::recv_with`].
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R, PipeRecvError> {
        self.0.recv_with(f)
    }

    /// Receives a value sent by [`ByteSender::send_serde`] (`serde`
    /// feature).
    ///
    /// # Errors
    ///
    /// As [`Connection::recv_serde`].
    #[cfg(feature = "serde")]
    pub fn recv_serde<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, PipeRecvError> {
        self.0.recv_serde()
    }

    /// The pipe end underneath.
    pub fn into_inner(self) -> Connection {
        self.0
    }
}
