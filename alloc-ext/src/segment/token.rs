//! The token that names one handle of a segment, for another process to
//! claim: its bytes cross process boundaries, so decoding checks every
//! field.

use multiproc_core::peers::Side;

use super::type_tag;
use super::QueueError;

const TOKEN_MAGIC: &[u8; 4] = b"MPQT";
/// 2: the ticket word (MPMC tokens) after the tag.
const TOKEN_VERSION: u8 = 2;
/// Bytes before the name.
const TOKEN_HEAD: usize = 48;
/// The token kind of an MPMC queue (tickets: MPMC queues and pipes).
pub(crate) const KIND_MPMC: u8 = 1;
/// The token kind of a pipe end (also claimed once, through a ticket).
pub(crate) const KIND_PIPE: u8 = 3;

/// What a token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: u8,
    pub(crate) side: Side,
    pub(crate) from_pid: u32,
    pub(crate) size: u64,
    pub(crate) align: u64,
    pub(crate) tag: u64,
    /// MPMC tokens: the word of their entry in the segment's ticket table
    /// ([`Tickets`]); 0 for other kinds.
    pub(crate) ticket: u64,
    pub(crate) name: String,
}

impl Token {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(TOKEN_HEAD + self.name.len());
        v.extend_from_slice(TOKEN_MAGIC);
        v.push(TOKEN_VERSION);
        v.push(self.kind);
        v.push(match self.side {
            Side::Sender => 0,
            Side::Receiver => 1,
        });
        v.push(0);
        v.extend_from_slice(&self.from_pid.to_le_bytes());
        v.extend_from_slice(&self.size.to_le_bytes());
        v.extend_from_slice(&self.align.to_le_bytes());
        v.extend_from_slice(&self.tag.to_le_bytes());
        v.extend_from_slice(&self.ticket.to_le_bytes());
        v.extend_from_slice(&(self.name.len() as u32).to_le_bytes());
        v.extend_from_slice(self.name.as_bytes());
        v
    }

    /// Decodes a token from bytes another process sent: every field is
    /// checked (the encoding is canonical: a token that decodes encodes to
    /// the same bytes), and the pid is one a process can have.
    pub(crate) fn decode(b: &[u8]) -> Result<Self, QueueError> {
        let bad = |reason| QueueError::BadToken { reason };
        let Some((head, rest)) = b.split_first_chunk::<TOKEN_HEAD>() else {
            return Err(bad("not a queue token"));
        };
        if &head[..4] != TOKEN_MAGIC {
            return Err(bad("not a queue token"));
        }
        if head[4] != TOKEN_VERSION {
            return Err(bad("token of another version"));
        }
        let u32_at = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
        let side = match head[6] {
            0 => Side::Sender,
            1 => Side::Receiver,
            _ => return Err(bad("unknown side")),
        };
        if head[7] != 0 {
            return Err(bad("reserved byte set"));
        }
        let from_pid = u32_at(8);
        if from_pid == 0 || libc::pid_t::try_from(from_pid).is_err() {
            return Err(bad("pid out of range"));
        }
        // Compared as u64: no sum that could overflow a 32-bit usize.
        let ticket = u64_at(36);
        if ticket != 0 && head[5] != KIND_MPMC && head[5] != KIND_PIPE {
            return Err(bad("ticket on a token of another kind"));
        }
        if rest.len() as u64 != u64::from(u32_at(44)) {
            return Err(bad("truncated token"));
        }
        let name = std::str::from_utf8(rest)
            .map_err(|_| bad("name is not UTF-8"))?
            .to_owned();
        Ok(Token {
            kind: head[5],
            side,
            from_pid,
            size: u64_at(12),
            align: u64_at(20),
            tag: u64_at(28),
            ticket,
            name,
        })
    }

    /// Checks the token names a `T` queue of `kind`, `side`.
    pub(crate) fn check<T>(&self, kind: u8, side: Side) -> Result<(), QueueError> {
        let bad = |reason| Err(QueueError::BadToken { reason });
        if self.kind != kind {
            return bad("token of another kind of queue");
        }
        if self.side != side {
            return bad("token of the other side");
        }
        if self.size != std::mem::size_of::<T>() as u64
            || self.align != std::mem::align_of::<T>() as u64
            || self.tag != type_tag::<T>()
        {
            return bad("token of another element type");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        Token {
            kind: 2,
            side: Side::Receiver,
            from_pid: 4242,
            size: 8,
            align: 8,
            tag: type_tag::<u64>(),
            ticket: 0,
            name: "/psm_token".into(),
        }
    }

    fn reason(b: &[u8]) -> &'static str {
        match Token::decode(b) {
            Err(QueueError::BadToken { reason }) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tokens_round_trip_canonically() {
        let t = token();
        let b = t.encode();
        assert_eq!(Token::decode(&b).unwrap(), t);
        let empty = Token {
            name: String::new(),
            ..token()
        };
        assert_eq!(Token::decode(&empty.encode()).unwrap(), empty);
        // Every prefix, and one byte more, is refused.
        for cut in 0..b.len() {
            assert!(Token::decode(&b[..cut]).is_err(), "{cut}");
        }
        let mut longer = b.clone();
        longer.push(b'x');
        assert_eq!(reason(&longer), "truncated token");
    }

    #[test]
    fn tokens_with_bad_fields_are_refused() {
        let b = token().encode();
        let with = |i: usize, v: &[u8]| {
            let mut c = b.clone();
            c[i..i + v.len()].copy_from_slice(v);
            c
        };
        assert_eq!(reason(&with(0, b"MPQX")), "not a queue token");
        assert_eq!(reason(&with(4, &[1])), "token of another version");
        assert_eq!(reason(&with(6, &[2])), "unknown side");
        // The reserved byte: a token that decodes encodes to its bytes.
        assert_eq!(reason(&with(7, &[1])), "reserved byte set");
        // Pids no process has: 0, and above pid_t's range.
        assert_eq!(reason(&with(8, &0u32.to_le_bytes())), "pid out of range");
        assert_eq!(
            reason(&with(8, &(1u32 << 31).to_le_bytes())),
            "pid out of range"
        );
        assert!(Token::decode(&with(8, &(i32::MAX as u32).to_le_bytes())).is_ok());
        // A name length past the end (and one that would overflow a 32-bit
        // `48 + len`).
        assert_eq!(
            reason(&with(44, &u32::MAX.to_le_bytes())),
            "truncated token"
        );
        // A ticket only on MPMC tokens.
        assert_eq!(
            reason(&with(36, &7u64.to_le_bytes())),
            "ticket on a token of another kind"
        );
        let mpmc = Token {
            kind: KIND_MPMC,
            ticket: 7 << 32 | 9,
            ..token()
        };
        assert_eq!(Token::decode(&mpmc.encode()).unwrap(), mpmc);
        let mut bad_utf8 = b.clone();
        *bad_utf8.last_mut().unwrap() = 0xff;
        assert_eq!(reason(&bad_utf8), "name is not UTF-8");
    }
}
