//! [`ShmQueueProxy`]: a Manager queue whose items live in shared memory,
//! so that proxies on the server's machine skip the server.

use std::time::Duration;

use super::objects::boot_id;
use super::pickle::PyValue;
use super::proxy::RawProxy;
use super::server::DEFAULT_MAX_MESSAGE;
use super::{ManagerError, ObjectKind, Token};
use crate::queue::{MessageReceiver, MessageRecvError, MessageSendError, MessageSender};

/// A proxy of a Manager's shared-memory queue of byte messages
/// ([`ManagerClient::shm_queue`](super::ManagerClient::shm_queue)).
///
/// The queue is a [`MessageQueue`](crate::queue::MessageQueue) that the
/// server creates and keeps alive. A proxy on the server's machine (same
/// kernel boot id) asks the server once for handles of its own, and from
/// then on puts and gets through the shared memory: no socket, no
/// pickle, no server thread (about a hundred nanoseconds a message rather
/// than tens of microseconds). A proxy on another machine, or a Python
/// client of the `ShmQueue` typeid, goes through the server, which puts
/// and gets on its own handles: the same queue either way. The proxy's
/// connection holds its reference to the queue, as for every proxy; a
/// process killed in the middle of a put or get leaves the queue usable
/// (see [`message_channel`](crate::queue::message_channel)).
#[derive(Debug)]
pub struct ShmQueueProxy {
    raw: RawProxy,
    local: Option<(MessageSender, MessageReceiver)>,
}

fn send_err(e: MessageSendError) -> ManagerError {
    match e {
        MessageSendError::Full | MessageSendError::Timeout => ManagerError::Full,
        MessageSendError::Disconnected => ManagerError::Disconnected,
        MessageSendError::TooLarge { len, max } => ManagerError::TooLarge {
            len: len as usize,
            max: max as usize,
        },
        #[cfg(feature = "serde")]
        MessageSendError::Encode(e) => ManagerError::Encode(e),
    }
}

fn recv_err(e: MessageRecvError) -> ManagerError {
    match e {
        MessageRecvError::Empty | MessageRecvError::Timeout => ManagerError::Empty,
        MessageRecvError::Disconnected => ManagerError::Disconnected,
        other => ManagerError::Remote {
            exception: "QueueError".into(),
            message: other.to_string(),
        },
    }
}

fn bytes_of(v: PyValue) -> Result<Vec<u8>, ManagerError> {
    match v {
        PyValue::Bytes(b) => Ok(b),
        other => Err(ManagerError::NotBytes(other.type_name().to_owned())),
    }
}

impl ShmQueueProxy {
    pub(crate) fn new(raw: RawProxy) -> Self {
        let local = Self::local_handles(&raw);
        Self { raw, local }
    }

    /// Handles of our own, if the server shares our machine.
    fn local_handles(raw: &RawProxy) -> Option<(MessageSender, MessageReceiver)> {
        let id = boot_id()?;
        let reply = raw
            .call("#tokens", vec![PyValue::Str(id)], Vec::new(), None)
            .ok()?;
        let PyValue::Tuple(t) = reply else {
            return None;
        };
        match &t[..] {
            [PyValue::Bytes(s), PyValue::Bytes(r)] => Some((
                MessageSender::from_token(s).ok()?,
                MessageReceiver::from_token(r).ok()?,
            )),
            _ => None,
        }
    }

    /// Connects to the queue `token` names, from any process holding
    /// `authkey`.
    ///
    /// # Errors
    ///
    /// As [`QueueProxy::connect`](super::QueueProxy::connect).
    pub fn connect(token: &Token, authkey: &[u8]) -> Result<Self, ManagerError> {
        let first = PyValue::Tuple(vec![
            PyValue::None,
            "#attach".into(),
            PyValue::Tuple(vec![PyValue::Str(token.id.clone())]),
            PyValue::Dict(Vec::new()),
        ]);
        let raw = RawProxy::open(
            &token.address,
            authkey,
            DEFAULT_MAX_MESSAGE,
            first,
            Some(ObjectKind::ShmQueue),
        )?;
        Ok(Self::new(raw))
    }

    /// What names the queue, for [`connect`](Self::connect).
    pub fn token(&self) -> &Token {
        &self.raw.token
    }

    /// This proxy, going through the server even on the server's machine
    /// (for a process that must not map the segment; and to measure the
    /// difference).
    pub fn via_server(mut self) -> Self {
        self.local = None;
        self
    }

    /// Whether this proxy goes through shared memory (it shares the
    /// server's machine) rather than through the server.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Puts `item`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`ManagerError::TooLarge`] for an item above the queue's
    /// `max_message`; [`ManagerError::Disconnected`] if the server is gone
    /// (through the server) or every receiver is (locally).
    pub fn put(&self, item: &[u8]) -> Result<(), ManagerError> {
        match &self.local {
            Some((tx, _)) => tx.send(item).map_err(send_err),
            None => self
                .raw
                .call("put", vec![PyValue::Bytes(item.to_vec())], Vec::new(), None)
                .map(drop),
        }
    }

    /// [`put`](Self::put), waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Full`]; as [`put`](Self::put).
    pub fn put_timeout(&self, item: &[u8], timeout: Duration) -> Result<(), ManagerError> {
        match &self.local {
            Some((tx, _)) => tx.send_timeout(item, timeout).map_err(send_err),
            None => self
                .raw
                .call(
                    "put",
                    vec![
                        PyValue::Bytes(item.to_vec()),
                        PyValue::Bool(true),
                        PyValue::Float(timeout.as_secs_f64()),
                    ],
                    Vec::new(),
                    Some(timeout + super::REPLY_GRACE),
                )
                .map(drop),
        }
    }

    /// Takes the oldest item, waiting for one.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Disconnected`] as for [`put`](Self::put).
    pub fn get(&self) -> Result<Vec<u8>, ManagerError> {
        match &self.local {
            Some((_, rx)) => rx.recv().map_err(recv_err),
            None => bytes_of(self.raw.call("get", Vec::new(), Vec::new(), None)?),
        }
    }

    /// [`get`](Self::get), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Empty`]; as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<u8>, ManagerError> {
        match &self.local {
            Some((_, rx)) => rx.recv_timeout(timeout).map_err(recv_err),
            None => bytes_of(self.raw.call(
                "get",
                vec![PyValue::Bool(true), PyValue::Float(timeout.as_secs_f64())],
                Vec::new(),
                Some(timeout + super::REPLY_GRACE),
            )?),
        }
    }

    /// Messages in the queue now.
    ///
    /// # Errors
    ///
    /// The connection errors of a call through the server.
    pub fn qsize(&self) -> Result<usize, ManagerError> {
        match &self.local {
            Some((tx, _)) => Ok(tx.len() as usize),
            None => {
                let v = self.raw.call("qsize", Vec::new(), Vec::new(), None)?;
                Ok(v.as_int().unwrap_or(0).max(0) as usize)
            }
        }
    }

    /// Puts `v` encoded with postcard (`serde` feature).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Encode`]; as [`put`](Self::put).
    #[cfg(feature = "serde")]
    pub fn put_serde<T: serde::Serialize + ?Sized>(&self, v: &T) -> Result<(), ManagerError> {
        self.put(&postcard::to_stdvec(v).map_err(ManagerError::Encode)?)
    }

    /// Takes an item put by [`put_serde`](Self::put_serde).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Decode`]; as [`get`](Self::get).
    #[cfg(feature = "serde")]
    pub fn get_serde<T: serde::de::DeserializeOwned>(&self) -> Result<T, ManagerError> {
        postcard::from_bytes(&self.get()?).map_err(ManagerError::Decode)
    }
}
