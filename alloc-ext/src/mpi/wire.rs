//! The messages between the master (rank 0) and the worker ranks: byte
//! vectors with a fixed little-endian header, told apart by their MPI tag.
//!
//! ```text
//! master -> rank   TASK    one or more chunks, each:
//!                          job u64 | chunk u64 | first u64 | count u32
//!                          | len u32 | runner u64 | func u64 | local runner u64
//!                          | items (postcard, back to back: `len` bytes)
//!                  STOP    (empty): finish the chunks held, then say BYE
//!                  ABORT   (empty): drop the chunks held, then say BYE
//! rank -> master   HELLO   status u32 | capacity u32 | local workers u32 | pid u32
//!                          | fingerprint u64 | text (host name, or the error)
//!                  RESULT  one or more chunks' outcomes, each:
//!                          job u64 | chunk u64 | first u64 | count u32
//!                          | grant u32
//!                          | outcomes: tag u8 | len u32 | bytes, `count` times
//!                  FATAL   text: the rank's local pool cannot run work any more
//!                  BYE     (empty): nothing more comes from this rank
//! ```
//!
//! Several chunks travel in one message when they can (the master deals
//! a rank all the chunks it has credits for at once, and a rank answers
//! each TASK message with one RESULT for the chunks it ran at once), so
//! that cheap chunks cost a fraction of a message each. `grant` is how
//! many chunks of that job the rank takes at once beyond HELLO's
//! capacity: a rank whose chunks run cheaply in the rank itself grants
//! more, so that more of them are in flight and travel together; 0 when
//! they go to its local pool. A grant is for its job alone, so that a
//! costly job that follows a cheap one is dealt by the capacity.
//!
//! MPI keeps the order of the messages between two processes, so a BYE
//! arrives after every RESULT of its rank. Every field read from a message
//! is checked: a message that does not parse is a [`WireError`], never a
//! panic.

use std::fmt;

use crate::pool::TaskError;

/// MPI tags of the messages (below 32767, the least `MPI_TAG_UB` an MPI
/// library may have).
pub(crate) mod tags {
    pub(crate) const TASK: i32 = 7101;
    pub(crate) const STOP: i32 = 7102;
    pub(crate) const ABORT: i32 = 7103;
    pub(crate) const HELLO: i32 = 7111;
    pub(crate) const RESULT: i32 = 7112;
    pub(crate) const FATAL: i32 = 7113;
    pub(crate) const BYE: i32 = 7114;
}

/// Tags of one outcome in a RESULT message.
mod outcome {
    pub(super) const OK: u8 = 0;
    pub(super) const PANICKED: u8 = 1;
    pub(super) const WORKER_LOST: u8 = 2;
    pub(super) const ITEM_TOO_LARGE: u8 = 3;
    pub(super) const RESULT_TOO_LARGE: u8 = 4;
    pub(super) const CODEC: u8 = 5;
    pub(super) const TERMINATED: u8 = 6;
}

/// Bytes of a TASK header.
pub(crate) const TASK_HEAD: usize = 56;
/// Bytes of a RESULT header.
pub(crate) const RESULT_HEAD: usize = 32;
/// Bytes of a HELLO header.
const HELLO_HEAD: usize = 24;

/// A message that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError(pub(crate) &'static str);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed message: {}", self.0)
    }
}

/// Reads little-endian fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(
            b.try_into().map_err(|_| WireError("u64"))?,
        ))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(
            b.try_into().map_err(|_| WireError("u32"))?,
        ))
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
}

/// The header of a TASK: which items of which job, and how to run them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskHead {
    /// The job, numbered by the master.
    pub(crate) job: u64,
    /// The chunk's number within the master's bookkeeping.
    pub(crate) chunk: u64,
    /// Index of the chunk's first item in the job's input.
    pub(crate) first: u64,
    /// Items in the chunk.
    pub(crate) count: u32,
    /// Bytes of the items.
    pub(crate) len: u32,
    /// Offset of the rank runner (see `runner`) from the anchor.
    pub(crate) runner: u64,
    /// Offset of the user's function from the anchor.
    pub(crate) func: u64,
    /// Offset of the local pool's runner (`pool::func::Runner`) of the
    /// same types: a rank hands the items to its local pool as they are.
    pub(crate) local_runner: u64,
}

impl TaskHead {
    /// Appends the header to `out`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.job.to_le_bytes());
        out.extend_from_slice(&self.chunk.to_le_bytes());
        out.extend_from_slice(&self.first.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.runner.to_le_bytes());
        out.extend_from_slice(&self.func.to_le_bytes());
        out.extend_from_slice(&self.local_runner.to_le_bytes());
    }

    /// Splits the first chunk off a TASK message: its header, its items,
    /// and the rest of the message (the next chunks).
    pub(crate) fn read(msg: &[u8]) -> Result<(TaskHead, &[u8], &[u8]), WireError> {
        let mut r = Reader(msg);
        let job = r.u64()?;
        let chunk = r.u64()?;
        let first = r.u64()?;
        let count = r.u32()?;
        let len = r.u32()?;
        let runner = r.u64()?;
        let func = r.u64()?;
        let local_runner = r.u64()?;
        let items = r.take(len as usize)?;
        Ok((
            TaskHead {
                job,
                chunk,
                first,
                count,
                len,
                runner,
                func,
                local_runner,
            },
            items,
            r.0,
        ))
    }
}

/// The header of a RESULT: the outcomes of which chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResultHead {
    /// As in the TASK.
    pub(crate) job: u64,
    /// As in the TASK.
    pub(crate) chunk: u64,
    /// As in the TASK.
    pub(crate) first: u64,
    /// Outcomes that follow (the TASK's count).
    pub(crate) count: u32,
    /// Chunks of the job the rank takes at once beyond its capacity.
    pub(crate) grant: u32,
}

impl ResultHead {
    /// Appends the header of `task`'s outcomes (grant 0: see
    /// [`set_grant`](Self::set_grant)) to `out`, to which the outcomes are
    /// then appended; where it starts.
    pub(crate) fn start(task: &TaskHead, out: &mut Vec<u8>) -> usize {
        let at = out.len();
        out.reserve(RESULT_HEAD + 16 * task.count as usize);
        out.extend_from_slice(&task.job.to_le_bytes());
        out.extend_from_slice(&task.chunk.to_le_bytes());
        out.extend_from_slice(&task.first.to_le_bytes());
        out.extend_from_slice(&task.count.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        at
    }

    /// Sets the grant of the header that starts at `at` in `out`.
    pub(crate) fn set_grant(out: &mut [u8], at: usize, grant: u32) {
        if let Some(field) = out.get_mut(at + RESULT_HEAD - 4..at + RESULT_HEAD) {
            field.copy_from_slice(&grant.to_le_bytes());
        }
    }

    /// Splits the first header off a RESULT message: the header, and the
    /// rest (its outcomes, then the next chunks').
    pub(crate) fn read(msg: &[u8]) -> Result<(ResultHead, &[u8]), WireError> {
        let mut r = Reader(msg);
        let job = r.u64()?;
        let chunk = r.u64()?;
        let first = r.u64()?;
        let count = r.u32()?;
        let grant = r.u32()?;
        Ok((
            ResultHead {
                job,
                chunk,
                first,
                count,
                grant,
            },
            r.0,
        ))
    }
}

/// One item's outcome as it travels: the encoded result, or why there is
/// none.
pub(crate) type RawOutcome = Result<Vec<u8>, TaskError>;

/// Appends a successful outcome (the result, encoded).
pub(crate) fn push_ok(out: &mut Vec<u8>, bytes: &[u8]) {
    push(out, outcome::OK, bytes);
}

fn push(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Appends a failed outcome.
pub(crate) fn push_err(out: &mut Vec<u8>, e: &TaskError) {
    match e {
        TaskError::Panicked(msg) => push(out, outcome::PANICKED, msg.as_bytes()),
        TaskError::WorkerLost { pid, exitcode } => {
            let mut b = [0u8; 9];
            b[..4].copy_from_slice(&pid.to_le_bytes());
            b[4] = u8::from(exitcode.is_some());
            b[5..].copy_from_slice(&exitcode.unwrap_or(0).to_le_bytes());
            push(out, outcome::WORKER_LOST, &b);
        }
        TaskError::ItemTooLarge { len, max } => {
            push(out, outcome::ITEM_TOO_LARGE, &two_u64(*len, *max));
        }
        TaskError::ResultTooLarge { len, max } => {
            push(out, outcome::RESULT_TOO_LARGE, &two_u64(*len, *max));
        }
        TaskError::Codec(msg) => push(out, outcome::CODEC, msg.as_bytes()),
        TaskError::Terminated => push(out, outcome::TERMINATED, &[]),
    }
}

fn two_u64(a: usize, b: usize) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&(a as u64).to_le_bytes());
    out[8..].copy_from_slice(&(b as u64).to_le_bytes());
    out
}

/// Reads `count` outcomes; them, and the bytes after them.
pub(crate) fn read_outcomes(
    body: &[u8],
    count: u32,
) -> Result<(Vec<RawOutcome>, &[u8]), WireError> {
    let mut r = Reader(body);
    // Every outcome takes at least its tag and length (5 bytes): a count
    // the body cannot hold fails below, without reserving room for it.
    let mut out = Vec::with_capacity((count as usize).min(body.len() / 5));
    for _ in 0..count {
        let tag = r.u8()?;
        let len = r.u32()? as usize;
        let bytes = r.take(len)?;
        let text = || String::from_utf8_lossy(bytes).into_owned();
        let o = match tag {
            outcome::OK => Ok(bytes.to_vec()),
            outcome::PANICKED => Err(TaskError::Panicked(text())),
            outcome::WORKER_LOST => {
                let mut b = Reader(bytes);
                let pid = b.u32()?;
                let has = b.u8()?;
                let code = b.u32()? as i32;
                Err(TaskError::WorkerLost {
                    pid,
                    exitcode: (has != 0).then_some(code),
                })
            }
            outcome::ITEM_TOO_LARGE | outcome::RESULT_TOO_LARGE => {
                let mut b = Reader(bytes);
                let len = b.u64()? as usize;
                let max = b.u64()? as usize;
                Err(if tag == outcome::ITEM_TOO_LARGE {
                    TaskError::ItemTooLarge { len, max }
                } else {
                    TaskError::ResultTooLarge { len, max }
                })
            }
            outcome::CODEC => Err(TaskError::Codec(text())),
            outcome::TERMINATED => Err(TaskError::Terminated),
            _ => return Err(WireError("unknown outcome tag")),
        };
        out.push(o);
    }
    Ok((out, r.0))
}

/// What a rank says when it is ready (or could not get ready).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    /// Chunks the master may give it at once.
    pub(crate) capacity: u32,
    /// Processes of its local pool (0: it runs tasks itself).
    pub(crate) local_workers: u32,
    /// Its process id.
    pub(crate) pid: u32,
    /// Identifies the executable it runs (see `runner::fingerprint`).
    pub(crate) fingerprint: u64,
    /// Its host name, or why it cannot work.
    pub(crate) text: String,
    /// Whether it can work.
    pub(crate) ok: bool,
}

impl Hello {
    /// The HELLO message.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HELLO_HEAD + self.text.len());
        out.extend_from_slice(&u32::from(!self.ok).to_le_bytes());
        out.extend_from_slice(&self.capacity.to_le_bytes());
        out.extend_from_slice(&self.local_workers.to_le_bytes());
        out.extend_from_slice(&self.pid.to_le_bytes());
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        out.extend_from_slice(self.text.as_bytes());
        out
    }

    /// Parses a HELLO message.
    pub(crate) fn decode(msg: &[u8]) -> Result<Hello, WireError> {
        let mut r = Reader(msg);
        let status = r.u32()?;
        let capacity = r.u32()?;
        let local_workers = r.u32()?;
        let pid = r.u32()?;
        let fingerprint = r.u64()?;
        Ok(Hello {
            capacity,
            local_workers,
            pid,
            fingerprint,
            text: String::from_utf8_lossy(r.0).into_owned(),
            ok: status == 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_and_result_round_trip() {
        let head = TaskHead {
            job: 3,
            chunk: 9,
            first: 1000,
            count: 4,
            len: 5,
            runner: 0xdead,
            func: u64::MAX - 1,
            local_runner: 77,
        };
        let mut msg = Vec::new();
        head.write(&mut msg);
        assert_eq!(msg.len(), TASK_HEAD);
        msg.extend_from_slice(b"items");
        // A second chunk in the same message.
        let second = TaskHead { len: 2, ..head };
        second.write(&mut msg);
        msg.extend_from_slice(b"it");
        let (h, items, rest) = TaskHead::read(&msg).unwrap();
        assert_eq!((h, items), (head, &b"items"[..]));
        let (h, items, rest) = TaskHead::read(rest).unwrap();
        assert_eq!((h, items, rest), (second, &b"it"[..], &[][..]));
        // A length beyond the message.
        let mut short = Vec::new();
        TaskHead { len: 6, ..head }.write(&mut short);
        short.extend_from_slice(b"items");
        assert!(TaskHead::read(&short).is_err());

        let mut out = b"earlier".to_vec();
        let at = ResultHead::start(&head, &mut out);
        assert_eq!((at, out.len()), (7, 7 + RESULT_HEAD));
        ResultHead::set_grant(&mut out, at, 3);
        let mut out = out.split_off(at);
        let errors = [
            TaskError::Panicked("boom".into()),
            TaskError::WorkerLost {
                pid: 77,
                exitcode: Some(-9),
            },
            TaskError::WorkerLost {
                pid: 78,
                exitcode: None,
            },
            TaskError::ItemTooLarge { len: 5, max: 4 },
            TaskError::ResultTooLarge { len: 6, max: 3 },
            TaskError::Codec("bad".into()),
            TaskError::Terminated,
        ];
        push_ok(&mut out, b"ok!");
        for e in &errors {
            push_err(&mut out, e);
        }
        out.extend_from_slice(b"next");
        let (rh, body) = ResultHead::read(&out).unwrap();
        assert_eq!(
            (rh.job, rh.chunk, rh.first, rh.count, rh.grant),
            (3, 9, 1000, 4, 3)
        );
        let (got, rest) = read_outcomes(body, 1 + errors.len() as u32).unwrap();
        assert_eq!(rest, b"next");
        assert_eq!(got[0], Ok(b"ok!".to_vec()));
        for (g, e) in got[1..].iter().zip(&errors) {
            assert_eq!(g.as_ref().unwrap_err(), e);
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(TaskHead::read(&[0; TASK_HEAD - 1]).is_err());
        assert!(ResultHead::read(&[1; 5]).is_err());
        // One outcome announced with 100 bytes, 2 present.
        let mut body = vec![0u8];
        body.extend_from_slice(&100u32.to_le_bytes());
        body.extend_from_slice(b"xy");
        assert!(read_outcomes(&body, 1).is_err());
        assert!(read_outcomes(&[42, 0, 0, 0, 0], 1).is_err());
        // Bytes after the outcomes are the next chunk's, which must parse.
        let (_, rest) = read_outcomes(&[0, 0, 0, 0, 0, 9], 1).unwrap();
        assert!(ResultHead::read(rest).is_err());
        assert!(Hello::decode(&[0; 10]).is_err());
        let h = Hello {
            capacity: 3,
            local_workers: 2,
            pid: 5,
            fingerprint: 99,
            text: "node1".into(),
            ok: true,
        };
        assert_eq!(Hello::decode(&h.encode()).unwrap(), h);
    }
}
