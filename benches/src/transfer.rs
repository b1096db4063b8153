//! The transfer loops of the IPC benches, shared by the criterion `ipc`
//! bench and the main job's IPC figures: each of multiproc's channels, as a
//! user calls it, seen as a [`Source`] or a [`Sink`] of sequence-numbered
//! messages; the loops that drive them ([`produce`], [`produce_until`],
//! [`consume`], [`echo`], [`trip`]); and the [`Tally`] a consumer checks.
//!
//! Every message carries its sequence number in its first 8 bytes (a `u64`
//! message is its sequence number). The consumer counts the messages and
//! sums their sequence numbers; the harness compares that [`Tally`] with
//! [`Tally::of`] the number sent, so no figure can come from lost or
//! duplicated messages.
//!
//! | end | multiproc API |
//! |---|---|
//! | [`QueueTx`], [`QueueRx`] | [`multiproc::queue::channel`] (`Queue`, MPMC): `send_timeout`, `recv_timeout` |
//! | [`SpscTx`], [`SpscRx`] | [`multiproc::spsc::channel`]: `send_timeout`, `recv_timeout` |
//! | [`BytesTx`], [`BytesRx`] | [`multiproc::queue::bytes_channel`], copying: `send`, `recv_into` |
//! | [`BytesInPlaceTx`], [`BytesInPlaceRx`] | the same, zero-copy: `send_with`, `recv_with` |
//! | [`PipeTx`], [`PipeRx`] | a [`multiproc::Connection`] of a `Pipe`: `send_bytes`, `recv_bytes_into` |

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use multiproc::pipe::PipeRecvError;
use multiproc::queue::{ByteReceiver, ByteSender, RecvTimeoutError};
use multiproc::{queue, spsc, Connection};

/// Longest wait of a timed send or receive: a dead or hung peer fails the
/// figure instead of hanging the run.
pub const STALL: Duration = Duration::from_secs(30);

/// What a consumer checks: the number of messages and the wrapping sum of
/// their sequence numbers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Messages received.
    pub count: u64,
    /// Wrapping sum of their sequence numbers.
    pub sum: u64,
}

impl Tally {
    /// Counts one message.
    pub fn add(&mut self, seq: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(seq);
    }

    /// The tally of `0..n`, what a producer that sent `n` messages sent.
    pub fn of(n: u64) -> Tally {
        let (a, b) = if n % 2 == 0 {
            (n / 2, n.wrapping_sub(1))
        } else {
            (n, n.wrapping_sub(1) / 2)
        };
        Tally {
            count: n,
            sum: a.wrapping_mul(b),
        }
    }
}

/// The sequence number in the first 8 bytes of `m`.
pub fn seq_of(m: &[u8]) -> u64 {
    u64::from_le_bytes(m[..8].try_into().expect("8 bytes"))
}

/// Writes sequence number `i` in the first 8 bytes of `m`.
pub fn put_seq(m: &mut [u8], i: u64) {
    m[..8].copy_from_slice(&i.to_le_bytes());
}

/// A fixed-size message that carries a sequence number.
pub trait Msg: Pod {
    /// The message with sequence number `seq`.
    fn with_seq(seq: u64) -> Self;
    /// Its sequence number.
    fn seq(&self) -> u64;
}

impl Msg for u64 {
    fn with_seq(seq: u64) -> Self {
        seq
    }
    fn seq(&self) -> u64 {
        *self
    }
}

impl<const N: usize> Msg for [u8; N]
where
    [u8; N]: Pod,
{
    fn with_seq(seq: u64) -> Self {
        let mut m = [0u8; N];
        put_seq(&mut m, seq);
        m
    }
    fn seq(&self) -> u64 {
        seq_of(self)
    }
}

/// The sending end of a stream.
pub trait Source {
    /// Sends the message with sequence number `seq`.
    fn send(&mut self, seq: u64) -> Result<(), String>;
}

/// The receiving end of a stream.
pub trait Sink {
    /// The sequence number of the next message; `None` at the end of the
    /// stream (every sender gone, everything received).
    fn recv(&mut self) -> Result<Option<u64>, String>;
}

/// Sends `0..n`.
pub fn produce(tx: &mut impl Source, n: u64) -> Result<(), String> {
    (0..n).try_for_each(|i| tx.send(i))
}

/// Sends `0, 1, ...` in batches of `batch` until `deadline` has passed;
/// returns how many were sent.
pub fn produce_until(tx: &mut impl Source, deadline: Instant, batch: u64) -> Result<u64, String> {
    let mut i = 0u64;
    loop {
        for _ in 0..batch.max(1) {
            tx.send(i)?;
            i += 1;
        }
        if Instant::now() >= deadline {
            return Ok(i);
        }
    }
}

/// Receives `limit` messages, or (with `None`) until the end of the
/// stream, and tallies them. The stream ending before `limit` is an error.
pub fn consume(rx: &mut impl Sink, limit: Option<u64>) -> Result<Tally, String> {
    let mut t = Tally::default();
    while limit.is_none_or(|n| t.count < n) {
        match rx.recv()? {
            Some(seq) => t.add(seq),
            None if limit.is_none() => break,
            None => return Err(format!("the stream ended after {} messages", t.count)),
        }
    }
    Ok(t)
}

/// The far side of a round trip: sends back each message it receives,
/// `limit` of them or (with `None`) until the end of the stream.
pub fn echo(rx: &mut impl Sink, tx: &mut impl Source, limit: Option<u64>) -> Result<(), String> {
    let mut done = 0u64;
    while limit.is_none_or(|n| done < n) {
        match rx.recv()? {
            Some(seq) => tx.send(seq)?,
            None if limit.is_none() => break,
            None => return Err(format!("the stream ended after {done} messages")),
        }
        done += 1;
    }
    Ok(())
}

/// One round trip: sends `seq`, waits for the echo, checks it.
pub fn trip(tx: &mut impl Source, rx: &mut impl Sink, seq: u64) -> Result<(), String> {
    tx.send(seq)?;
    match rx.recv()? {
        Some(v) if v == seq => Ok(()),
        Some(v) => Err(format!("sent {seq}, got {v} back")),
        None => Err("the echo ended".into()),
    }
}

/// A [`Sink`]'s answer to a receive error: the end of the stream, or the
/// error as text.
fn end_or(e: RecvTimeoutError) -> Result<Option<u64>, String> {
    match e {
        RecvTimeoutError::Disconnected => Ok(None),
        e => Err(format!("recv: {e}")),
    }
}

/// As [`end_or`], for the byte channels and pipes.
fn pipe_end_or(e: PipeRecvError) -> Result<Option<u64>, String> {
    match e {
        PipeRecvError::Disconnected => Ok(None),
        e => Err(format!("recv: {e}")),
    }
}

/// The two ends of a channel of [`Msg`] values, over its sending and
/// receiving handle types (which share `send_timeout`/`recv_timeout`).
macro_rules! msg_channel {
    ($tx:ident($sender:ty), $rx:ident($receiver:ty), $api:literal) => {
        #[doc = concat!("The sending end of [`", $api, "`].")]
        #[derive(Debug)]
        pub struct $tx<T: Msg>(pub $sender);

        #[doc = concat!("The receiving end of [`", $api, "`].")]
        #[derive(Debug)]
        pub struct $rx<T: Msg>(pub $receiver);

        impl<T: Msg> Source for $tx<T> {
            fn send(&mut self, seq: u64) -> Result<(), String> {
                self.0
                    .send_timeout(T::with_seq(seq), STALL)
                    .map_err(|e| format!("send: {e}"))
            }
        }

        impl<T: Msg> Sink for $rx<T> {
            fn recv(&mut self) -> Result<Option<u64>, String> {
                self.0
                    .recv_timeout(STALL)
                    .map(|m| Some(m.seq()))
                    .or_else(end_or)
            }
        }
    };
}

msg_channel!(
    QueueTx(queue::Sender<T>),
    QueueRx(queue::Receiver<T>),
    "multiproc::queue::channel"
);
msg_channel!(
    SpscTx(spsc::Producer<T>),
    SpscRx(spsc::Consumer<T>),
    "multiproc::spsc::channel"
);

/// The sender of a [`multiproc::queue::bytes_channel`], copying a ready
/// message of `size` bytes in (`send`).
#[derive(Debug)]
pub struct BytesTx {
    tx: ByteSender,
    msg: Vec<u8>,
}

impl BytesTx {
    /// Sends messages of `size` (at least 8) bytes through `tx`.
    pub fn new(tx: ByteSender, size: usize) -> Self {
        Self {
            tx,
            msg: vec![7u8; size],
        }
    }
}

impl Source for BytesTx {
    fn send(&mut self, seq: u64) -> Result<(), String> {
        put_seq(&mut self.msg, seq);
        self.tx.send(&self.msg).map_err(|e| format!("send: {e}"))
    }
}

/// The receiver of a [`multiproc::queue::bytes_channel`], copying each
/// message out into a buffer (`recv_into`) and checking its length.
#[derive(Debug)]
pub struct BytesRx {
    rx: ByteReceiver,
    buf: Vec<u8>,
}

impl BytesRx {
    /// Receives messages of `size` bytes from `rx`.
    pub fn new(rx: ByteReceiver, size: usize) -> Self {
        Self {
            rx,
            buf: vec![0u8; size],
        }
    }
}

impl Sink for BytesRx {
    fn recv(&mut self) -> Result<Option<u64>, String> {
        match self.rx.recv_into(&mut self.buf) {
            Ok(n) if n == self.buf.len() => Ok(Some(seq_of(&self.buf))),
            Ok(n) => Err(format!("a message of {n} bytes, not {}", self.buf.len())),
            Err(e) => pipe_end_or(e),
        }
    }
}

/// The sender of a [`multiproc::queue::bytes_channel`], zero-copy: writes
/// every byte of each `size`-byte message in place (`send_with`).
#[derive(Debug)]
pub struct BytesInPlaceTx {
    tx: ByteSender,
    size: usize,
}

impl BytesInPlaceTx {
    /// Writes messages of `size` (at least 8) bytes in place in `tx`.
    pub fn new(tx: ByteSender, size: usize) -> Self {
        Self { tx, size }
    }
}

impl Source for BytesInPlaceTx {
    fn send(&mut self, seq: u64) -> Result<(), String> {
        self.tx
            .send_with(self.size, |m| {
                m.fill(seq as u8);
                put_seq(m, seq);
            })
            .map_err(|e| format!("send_with: {e}"))
    }
}

/// The receiver of a [`multiproc::queue::bytes_channel`], zero-copy: reads
/// each message in place (`recv_with`), checks its length and last byte
/// (written last by [`BytesInPlaceTx`]) and, with `read_all`, folds every
/// 8-byte word of it (a consumer that uses the whole message where it
/// lies).
#[derive(Debug)]
pub struct BytesInPlaceRx {
    rx: ByteReceiver,
    size: usize,
    read_all: bool,
}

impl BytesInPlaceRx {
    /// Reads messages of `size` bytes in place in `rx`.
    pub fn new(rx: ByteReceiver, size: usize, read_all: bool) -> Self {
        Self { rx, size, read_all }
    }
}

impl Sink for BytesInPlaceRx {
    fn recv(&mut self) -> Result<Option<u64>, String> {
        let (size, read_all) = (self.size, self.read_all);
        let got = self.rx.recv_with(|m| {
            let seq = seq_of(m);
            if read_all {
                black_box(fold_words(m));
            }
            (m.len(), seq, m[m.len() - 1])
        });
        match got {
            Ok((len, seq, last)) if len == size && (size <= 8 || last == seq as u8) => {
                Ok(Some(seq))
            }
            Ok((len, seq, _)) => Err(format!("message {seq} of {len} bytes is torn")),
            Err(e) => pipe_end_or(e),
        }
    }
}

/// Reads every 8-byte word of `bytes`.
fn fold_words(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
        .fold(0, u64::wrapping_add)
}

/// The writing end of a pipe, sending messages of `size` bytes
/// (`Connection::send_bytes`).
#[derive(Debug)]
pub struct PipeTx {
    conn: Connection,
    msg: Vec<u8>,
}

impl PipeTx {
    /// Sends messages of `size` (at least 8) bytes on `conn`.
    pub fn new(conn: Connection, size: usize) -> Self {
        Self {
            conn,
            msg: vec![7u8; size],
        }
    }
}

impl Source for PipeTx {
    fn send(&mut self, seq: u64) -> Result<(), String> {
        put_seq(&mut self.msg, seq);
        self.conn
            .send_bytes(&self.msg)
            .map_err(|e| format!("send_bytes: {e}"))
    }
}

/// The reading end of a pipe, receiving messages of `size` bytes into a
/// buffer (`Connection::recv_bytes_into`).
#[derive(Debug)]
pub struct PipeRx {
    conn: Connection,
    buf: Vec<u8>,
}

impl PipeRx {
    /// Receives messages of `size` bytes on `conn`.
    pub fn new(conn: Connection, size: usize) -> Self {
        Self {
            conn,
            buf: vec![0u8; size],
        }
    }
}

impl Sink for PipeRx {
    fn recv(&mut self) -> Result<Option<u64>, String> {
        match self.conn.recv_bytes_into(&mut self.buf) {
            Ok(n) if n == self.buf.len() => Ok(Some(seq_of(&self.buf))),
            Ok(n) => Err(format!("a message of {n} bytes, not {}", self.buf.len())),
            Err(e) => pipe_end_or(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_of_matches_a_loop() {
        for n in [0u64, 1, 2, 3, 10, 1001] {
            let mut t = Tally::default();
            (0..n).for_each(|i| t.add(i));
            assert_eq!(Tally::of(n), t, "n = {n}");
        }
    }

    #[test]
    fn a_stream_through_each_channel_tallies() {
        let (tx, rx) = queue::channel::<[u8; 8]>(64).unwrap();
        let (mut tx, mut rx) = (QueueTx(tx), QueueRx(rx));
        produce(&mut tx, 50).unwrap();
        drop(tx);
        assert_eq!(consume(&mut rx, None).unwrap(), Tally::of(50));

        let (tx, rx) = spsc::channel::<u64>(64).unwrap();
        let (mut tx, mut rx) = (SpscTx(tx), SpscRx(rx));
        produce(&mut tx, 50).unwrap();
        assert_eq!(consume(&mut rx, Some(50)).unwrap(), Tally::of(50));
        drop(tx);
        assert!(consume(&mut rx, Some(1)).is_err(), "the end is an error");

        let (tx, rx) = queue::bytes_channel(1 << 16, 100).unwrap();
        let (mut tx, mut rx) = (BytesTx::new(tx, 100), BytesRx::new(rx, 100));
        produce(&mut tx, 50).unwrap();
        drop(tx);
        assert_eq!(consume(&mut rx, None).unwrap(), Tally::of(50));

        let (tx, rx) = queue::bytes_channel(1 << 16, 100).unwrap();
        let mut tx = BytesInPlaceTx::new(tx, 100);
        let mut rx = BytesInPlaceRx::new(rx, 100, true);
        produce(&mut tx, 50).unwrap();
        drop(tx);
        assert_eq!(consume(&mut rx, None).unwrap(), Tally::of(50));

        let (w, r) = multiproc::Pipe::new().duplex(false).open().unwrap();
        let (mut tx, mut rx) = (PipeTx::new(w, 16), PipeRx::new(r, 16));
        produce(&mut tx, 50).unwrap();
        drop(tx);
        assert_eq!(consume(&mut rx, None).unwrap(), Tally::of(50));
    }

    #[test]
    fn a_message_of_another_size_fails_the_stream() {
        let (tx, rx) = queue::bytes_channel(1 << 16, 100).unwrap();
        let (mut tx, mut rx) = (BytesTx::new(tx, 16), BytesRx::new(rx, 100));
        tx.send(0).unwrap();
        assert!(consume(&mut rx, Some(1)).is_err());
    }

    #[test]
    fn echo_and_trip_pair_up() {
        let (ptx, prx) = spsc::channel::<u64>(8).unwrap();
        let (ctx, crx) = spsc::channel::<u64>(8).unwrap();
        let (mut ptx, mut crx) = (SpscTx(ptx), SpscRx(crx));
        let far = std::thread::spawn(move || echo(&mut SpscRx(prx), &mut SpscTx(ctx), None));
        for i in 0..100 {
            trip(&mut ptx, &mut crx, i).unwrap();
        }
        drop(ptx);
        far.join().unwrap().unwrap();
    }
}
