//! Typed queues of serde values (`serde` feature): postcard encodings in
//! the slots of a message queue.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use multiproc_core::time::Deadline;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{MessageQueue, MessageReceiver, MessageRecvError, MessageSendError, MessageSender};
use crate::queue::error::QueueError;
use crate::segment::type_tag;

/// A bounded MPMC queue of `capacity` values of `T`, each encoded (postcard)
/// in at most `max_message` bytes, in an anonymous shared segment (`serde`
/// feature). For a named segment, build it with
/// [`MessageQueue::object_channel`].
///
/// # Errors
///
/// As [`MessageQueue::channel`].
///
/// # Examples
///
/// ```
/// // An id and its arguments (any `Serialize + DeserializeOwned` type: a
/// // `#[derive(Serialize, Deserialize)]` struct works the same).
/// let (tx, rx) = multiproc::queue::object_channel::<(u32, Vec<String>)>(16, 512)?;
/// tx.send(&(1, vec!["-v".to_string()])).unwrap();
/// assert_eq!(rx.recv().unwrap(), (1, vec!["-v".to_string()]));
/// # Ok::<(), multiproc::queue::QueueError>(())
/// ```
pub fn object_channel<T: Serialize + DeserializeOwned>(
    capacity: u64,
    max_message: u64,
) -> Result<(ObjectSender<T>, ObjectReceiver<T>), QueueError> {
    MessageQueue::new(capacity, max_message).object_channel()
}

impl MessageQueue {
    /// Makes the queue for values of `T` and returns its two first handles
    /// (`serde` feature). The queue is tagged with `T`'s name: tokens and
    /// attaches for another type are refused.
    ///
    /// # Errors
    ///
    /// As [`channel`](Self::channel).
    pub fn object_channel<T: Serialize + DeserializeOwned>(
        self,
    ) -> Result<(ObjectSender<T>, ObjectReceiver<T>), QueueError> {
        let (tx, rx) = self.channel_tagged(type_tag::<T>())?;
        Ok((
            ObjectSender {
                tx,
                _t: PhantomData,
            },
            ObjectReceiver {
                rx,
                _t: PhantomData,
            },
        ))
    }
}

/// The sending side of an [`object_channel`]: `Clone`, `Send`, `Sync`; as
/// [`MessageSender`], encoding each value with postcard straight into its
/// slot.
pub struct ObjectSender<T> {
    tx: MessageSender,
    _t: PhantomData<fn(&T)>,
}

impl<T> fmt::Debug for ObjectSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ObjectSender").field(&self.tx).finish()
    }
}

impl<T> Clone for ObjectSender<T> {
    /// Another sender, counted in this process.
    ///
    /// # Panics
    ///
    /// As [`MessageSender::clone`].
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> crate::process::Inherit for ObjectSender<T> {
    fn inherit(&self) {
        self.tx.inherit();
    }
}

impl<T: Serialize> ObjectSender<T> {
    /// Another sender, counted in this process: [`Clone`] without the
    /// panic.
    ///
    /// # Errors
    ///
    /// As [`MessageSender::try_clone`].
    pub fn try_clone(&self) -> Result<Self, QueueError> {
        Ok(Self {
            tx: self.tx.try_clone()?,
            _t: PhantomData,
        })
    }

    /// Encodes `v` into the slot the guard holds and sends it.
    fn fill(&self, mut w: super::MessageWriter<'_>, v: &T) -> Result<(), MessageSendError> {
        match postcard::to_slice(v, &mut w) {
            Ok(used) => {
                let len = used.len();
                w.commit(len)
            }
            Err(postcard::Error::SerializeBufferFull) => {
                // Nothing is sent (the slot is stepped over); say how long
                // the encoding is.
                drop(w);
                let len = postcard::serialize_with_flavor::<T, _, usize>(
                    v,
                    postcard::ser_flavors::Size::default(),
                )
                .map_err(MessageSendError::Encode)?;
                Err(MessageSendError::TooLarge {
                    len: len as u64,
                    max: self.tx.max_message() as u64,
                })
            }
            Err(e) => Err(MessageSendError::Encode(e)),
        }
    }

    /// Sends `v` if there is room, without blocking.
    ///
    /// # Errors
    ///
    /// [`MessageSendError::Full`], [`MessageSendError::Disconnected`],
    /// [`MessageSendError::TooLarge`] if its encoding is longer than
    /// `max_message`, [`MessageSendError::Encode`].
    pub fn try_send(&self, v: &T) -> Result<(), MessageSendError> {
        self.fill(self.tx.try_send_ref()?, v)
    }

    /// Sends `v`, blocking while the queue is full.
    ///
    /// `v` is encoded once a slot is taken, straight into it: receivers
    /// that reach the slot wait for the encoding. If the process dies
    /// meanwhile, or the encoding fails or panics, nothing is sent and
    /// receivers step over the slot.
    ///
    /// # Errors
    ///
    /// [`MessageSendError::Disconnected`] when every receiver is gone;
    /// [`MessageSendError::TooLarge`]; [`MessageSendError::Encode`].
    pub fn send(&self, v: &T) -> Result<(), MessageSendError> {
        self.fill(self.tx.send_ref_deadline(None)?, v)
    }

    /// Sends `v`, blocking at most `timeout` while the queue is full.
    ///
    /// # Errors
    ///
    /// [`MessageSendError::Timeout`]; else as [`send`](Self::send).
    pub fn send_timeout(&self, v: &T, timeout: Duration) -> Result<(), MessageSendError> {
        self.fill(
            self.tx.send_ref_deadline(Some(Deadline::after(timeout)))?,
            v,
        )
    }

    /// Hands this sender to another process; see
    /// [`MessageSender::to_token`].
    ///
    /// # Errors
    ///
    /// As [`MessageSender::to_token`].
    pub fn to_token(&self) -> Result<Vec<u8>, QueueError> {
        self.tx.to_token()
    }

    /// Claims a token made by [`ObjectSender::to_token`] for the same `T`.
    ///
    /// # Errors
    ///
    /// As [`MessageSender::from_token`]; a token of a queue of another
    /// type is [`QueueError::BadToken`].
    pub fn from_token(token: &[u8]) -> Result<Self, QueueError> {
        Ok(Self {
            tx: MessageSender::from_token_tagged(token, type_tag::<T>())?,
            _t: PhantomData,
        })
    }

    /// The byte-message sender underneath.
    pub fn as_messages(&self) -> &MessageSender {
        &self.tx
    }

    /// Closes the queue for everyone.
    pub fn close(&self) {
        self.tx.close();
    }

    /// Whether every receiver is gone or the queue is closed.
    pub fn is_disconnected(&self) -> bool {
        self.tx.is_disconnected()
    }

    /// The number of queued values, approximately.
    pub fn len(&self) -> u64 {
        self.tx.len()
    }

    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}

/// The receiving side of an [`object_channel`]: `Clone`, `Send`, `Sync`; as
/// [`MessageReceiver`], decoding each value straight from its slot.
pub struct ObjectReceiver<T> {
    rx: MessageReceiver,
    _t: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for ObjectReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ObjectReceiver").field(&self.rx).finish()
    }
}

impl<T> Clone for ObjectReceiver<T> {
    /// Another receiver, counted in this process.
    ///
    /// # Panics
    ///
    /// As [`MessageReceiver::clone`].
    fn clone(&self) -> Self {
        Self {
            rx: self.rx.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> crate::process::Inherit for ObjectReceiver<T> {
    fn inherit(&self) {
        self.rx.inherit();
    }
}

impl<T: DeserializeOwned> ObjectReceiver<T> {
    /// Another receiver, counted in this process: [`Clone`] without the
    /// panic.
    ///
    /// # Errors
    ///
    /// As [`MessageReceiver::try_clone`].
    pub fn try_clone(&self) -> Result<Self, QueueError> {
        Ok(Self {
            rx: self.rx.try_clone()?,
            _t: PhantomData,
        })
    }

    fn decode(m: super::MessageRef<'_>) -> Result<T, MessageRecvError> {
        // The slot is freed when `m` drops, after the decode.
        postcard::from_bytes(&m).map_err(MessageRecvError::Decode)
    }

    /// Receives the oldest value, without blocking.
    ///
    /// # Errors
    ///
    /// [`MessageRecvError::Empty`], [`MessageRecvError::Disconnected`],
    /// [`MessageRecvError::Decode`] if the message is not a valid encoding
    /// of `T` (it is consumed), [`MessageRecvError::Corrupt`].
    pub fn try_recv(&self) -> Result<T, MessageRecvError> {
        Self::decode(self.rx.try_recv_ref()?)
    }

    /// Receives the oldest value, blocking while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`MessageRecvError::Disconnected`] once the queue is empty and every
    /// sender is gone; [`MessageRecvError::Decode`];
    /// [`MessageRecvError::Corrupt`].
    pub fn recv(&self) -> Result<T, MessageRecvError> {
        Self::decode(self.rx.recv_ref_deadline(None)?)
    }

    /// Receives the oldest value, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`MessageRecvError::Timeout`]; else as [`recv`](Self::recv).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, MessageRecvError> {
        Self::decode(self.rx.recv_ref_timeout(timeout)?)
    }

    /// Hands this receiver to another process; see
    /// [`MessageSender::to_token`].
    ///
    /// # Errors
    ///
    /// As [`MessageSender::to_token`].
    pub fn to_token(&self) -> Result<Vec<u8>, QueueError> {
        self.rx.to_token()
    }

    /// Claims a token made by [`ObjectReceiver::to_token`] for the same
    /// `T`.
    ///
    /// # Errors
    ///
    /// As [`ObjectSender::from_token`].
    pub fn from_token(token: &[u8]) -> Result<Self, QueueError> {
        Ok(Self {
            rx: MessageReceiver::from_token_tagged(token, type_tag::<T>())?,
            _t: PhantomData,
        })
    }

    /// The byte-message receiver underneath (to read the encodings raw).
    pub fn as_messages(&self) -> &MessageReceiver {
        &self.rx
    }

    /// Closes the queue for everyone.
    pub fn close(&self) {
        self.rx.close();
    }

    /// Whether every sender is gone or the queue is closed.
    pub fn is_disconnected(&self) -> bool {
        self.rx.is_disconnected()
    }

    /// The number of queued values, approximately.
    pub fn len(&self) -> u64 {
        self.rx.len()
    }

    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}
