//! Python's challenge/answer authentication, both roles, both generations.
//!
//! One round (the *deliverer* proves that the *answerer* holds the key):
//!
//! ```text
//!  deliverer                                   answerer
//!  frame  #CHALLENGE#<message>          --->
//!                                       <---   frame  <response>
//!  frame  #WELCOME# or #FAILURE#        --->
//! ```
//!
//! | generation | `<message>` | `<response>` |
//! |---|---|---|
//! | Python 3.11 and older | 20 random bytes | HMAC-MD5(key, message), 16 bytes, no prefix |
//! | Python 3.12 and newer | `{sha256}` + 40 random bytes | `{sha256}` + HMAC-SHA256(key, message) |
//!
//! The MAC covers the whole message, its `{digest}` prefix included (so a
//! man in the middle cannot strip it to downgrade). An answerer answers a
//! message of 20 (or 16) bytes with a bare HMAC-MD5, and a `{name}` message
//! with `{name}` + HMAC-name; a verifier takes a bare 16-byte HMAC-MD5 or a
//! `{name}`-prefixed MAC. Digests here: `md5`, `sha256`, `sha384` (Python
//! 3.12 also knows `sha3_256` and `sha3_384`, which no Python sends unless
//! told to). A 3.11 peer answers a `{sha256}` challenge with a bare
//! HMAC-MD5 over all of it, which the verifier accepts, as Python 3.12's
//! does.
//!
//! A listener delivers and then answers; a client answers and then
//! delivers. Every handshake read is one frame of at most
//! [`MAX_HANDSHAKE_FRAME`] bytes, under the caller's deadline.

use std::time::Instant;

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Sha256, Sha384};

use super::wire::{self, Dest, FrameReader, Transport};
use super::ConnectionError;

/// The challenge's prefix.
pub(crate) const CHALLENGE: &[u8] = b"#CHALLENGE#";
/// The verifier's reply to a good answer.
pub(crate) const WELCOME: &[u8] = b"#WELCOME#";
/// The verifier's reply to a bad answer.
pub(crate) const FAILURE: &[u8] = b"#FAILURE#";
/// The longest frame a handshake reads (Python's `recv_bytes(256)`).
pub(crate) const MAX_HANDSHAKE_FRAME: usize = 256;
/// Random bytes of a legacy (3.11) challenge.
const LEGACY_LEN: usize = 20;
/// Bytes of an HMAC-MD5.
const MD5_LEN: usize = 16;
/// Random bytes after the `{digest}` prefix (3.12).
const MODERN_LEN: usize = 40;
/// The longest digest name Python knows (`sha3_256`).
const MAX_DIGEST_NAME: usize = 8;

/// Which challenge a [`Listener`](super::Listener) or
/// [`Client`](super::Client) delivers to its peer.
///
/// Either is answered correctly by Python 3.11 and by 3.12 and newer (an
/// older Python answers a `{sha256}` challenge with HMAC-MD5 over all of
/// it, which is accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Challenge {
    /// `{sha256}` and 40 random bytes, as Python 3.12 and newer send
    /// (the default).
    #[default]
    Sha256,
    /// 20 random bytes, as Python 3.11 and older send; the peer answers
    /// with HMAC-MD5.
    Legacy,
}

/// A digest the handshake computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Digest {
    Md5,
    Sha256,
    Sha384,
}

impl Digest {
    fn from_name(name: &[u8]) -> Option<Self> {
        match name {
            b"md5" => Some(Self::Md5),
            b"sha256" => Some(Self::Sha256),
            b"sha384" => Some(Self::Sha384),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
        }
    }

    /// HMAC(key, msg).
    pub(crate) fn mac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
            // HMAC takes a key of any length: this cannot fail.
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Self::Md5 => run::<Hmac<Md5>>(key, msg),
            Self::Sha256 => run::<Hmac<Sha256>>(key, msg),
            Self::Sha384 => run::<Hmac<Sha384>>(key, msg),
        }
    }

    /// Whether `tag` is HMAC(key, msg), compared in constant time (a tag of
    /// another length is refused at once: the length is not a secret).
    pub(crate) fn verify(self, key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
            let Ok(mut m) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
                return false;
            };
            m.update(msg);
            m.verify_slice(tag).is_ok()
        }
        match self {
            Self::Md5 => run::<Hmac<Md5>>(key, msg, tag),
            Self::Sha256 => run::<Hmac<Sha256>>(key, msg, tag),
            Self::Sha384 => run::<Hmac<Sha384>>(key, msg, tag),
        }
    }
}

/// Splits a challenge message or a response into its digest and the rest
/// (Python's `_get_digest_name_and_payload`): 20 or 16 bytes are legacy
/// (`Ok((None, all))`), else `{name}` must lead.
///
/// # Errors
///
/// `Err(())` for an unknown or missing digest name.
pub(crate) fn split_digest(msg: &[u8]) -> Result<(Option<Digest>, &[u8]), ()> {
    if msg.len() == LEGACY_LEN || msg.len() == MD5_LEN {
        return Ok((None, msg));
    }
    if msg.first() != Some(&b'{') {
        return Err(());
    }
    let window = &msg[1..msg.len().min(MAX_DIGEST_NAME + 2)];
    let close = window.iter().position(|&b| b == b'}').ok_or(())?;
    let d = Digest::from_name(&window[..close]).ok_or(())?;
    Ok((Some(d), &msg[close + 2..]))
}

/// The response to a challenge `message` (without `#CHALLENGE#`): a bare
/// HMAC-MD5 for a legacy message, `{name}` + HMAC-name for a prefixed one.
///
/// # Errors
///
/// [`ConnectionError::BadChallenge`]: no digest this side knows.
pub(crate) fn create_response(key: &[u8], message: &[u8]) -> Result<Vec<u8>, ConnectionError> {
    match split_digest(message) {
        Ok((None, _)) => Ok(Digest::Md5.mac(key, message)),
        Ok((Some(d), _)) => {
            let mut r = format!("{{{}}}", d.name()).into_bytes();
            r.extend_from_slice(&d.mac(key, message));
            Ok(r)
        }
        Err(()) => Err(ConnectionError::BadChallenge),
    }
}

/// Whether `response` answers `message` (Python's `_verify_challenge`).
pub(crate) fn verify_response(key: &[u8], message: &[u8], response: &[u8]) -> bool {
    match split_digest(response) {
        Ok((d, mac)) => d.unwrap_or(Digest::Md5).verify(key, message, mac),
        Err(()) => false,
    }
}

/// The message of a `kind` challenge, random bytes from `random`.
pub(crate) fn challenge_message(kind: Challenge, random: impl FnOnce(&mut [u8])) -> Vec<u8> {
    match kind {
        Challenge::Legacy => {
            let mut m = vec![0u8; LEGACY_LEN];
            random(&mut m);
            m
        }
        Challenge::Sha256 => {
            let mut m = b"{sha256}".to_vec();
            let p = m.len();
            m.resize(p + MODERN_LEN, 0);
            random(&mut m[p..]);
            m
        }
    }
}

/// One handshake frame.
fn recv<T: Transport + ?Sized>(
    t: &mut T,
    r: &mut FrameReader,
    deadline: Option<Instant>,
    buf: &mut Vec<u8>,
) -> Result<(), ConnectionError> {
    match r.read_frame(t, deadline, MAX_HANDSHAKE_FRAME, Dest::Vec(buf)) {
        Ok(_) => Ok(()),
        // A handshake that oversteps is a protocol error, whatever the
        // reader could still do with the stream.
        Err(ConnectionError::TooLarge { .. } | ConnectionError::BadLength(_)) => {
            r.set_broken();
            Err(ConnectionError::BadChallenge)
        }
        Err(e) => {
            r.set_broken();
            Err(e)
        }
    }
}

/// Delivers a `kind` challenge and checks the answer (Python's
/// `deliver_challenge`): `#WELCOME#` and `Ok` if it is right, `#FAILURE#`
/// and [`ConnectionError::AuthFailed`] if not.
///
/// # Errors
///
/// [`ConnectionError::AuthFailed`], and those of a frame read or write.
pub(crate) fn deliver_challenge<T: Transport + ?Sized>(
    t: &mut T,
    r: &mut FrameReader,
    key: &[u8],
    kind: Challenge,
    random: impl FnOnce(&mut [u8]),
    deadline: Option<Instant>,
) -> Result<(), ConnectionError> {
    let message = challenge_message(kind, random);
    let mut frame = CHALLENGE.to_vec();
    frame.extend_from_slice(&message);
    let mut scratch = Vec::new();
    wire::write_frame(t, &mut scratch, &frame, deadline)?;
    let mut response = Vec::new();
    recv(t, r, deadline, &mut response)?;
    if verify_response(key, &message, &response) {
        wire::write_frame(t, &mut scratch, WELCOME, deadline)
    } else {
        // Best effort: the peer is told, the caller gets the refusal.
        let _ = wire::write_frame(t, &mut scratch, FAILURE, deadline);
        Err(ConnectionError::AuthFailed)
    }
}

/// Answers the peer's challenge and reads its verdict (Python's
/// `answer_challenge`).
///
/// # Errors
///
/// [`ConnectionError::BadChallenge`] if the first frame is no challenge
/// this side can answer, [`ConnectionError::AuthFailed`] if the verdict is
/// not `#WELCOME#`, and those of a frame read or write.
pub(crate) fn answer_challenge<T: Transport + ?Sized>(
    t: &mut T,
    r: &mut FrameReader,
    key: &[u8],
    deadline: Option<Instant>,
) -> Result<(), ConnectionError> {
    let mut msg = Vec::new();
    recv(t, r, deadline, &mut msg)?;
    let Some(message) = msg.strip_prefix(CHALLENGE) else {
        r.set_broken();
        return Err(ConnectionError::BadChallenge);
    };
    if message.len() < LEGACY_LEN {
        r.set_broken();
        return Err(ConnectionError::BadChallenge);
    }
    let response = create_response(key, message).inspect_err(|_| r.set_broken())?;
    let mut scratch = Vec::new();
    wire::write_frame(t, &mut scratch, &response, deadline)?;
    let mut verdict = Vec::new();
    recv(t, r, deadline, &mut verdict)?;
    if verdict == WELCOME {
        Ok(())
    } else {
        r.set_broken();
        Err(ConnectionError::AuthFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::wire::MemTransport;
    use super::*;

    fn frame(p: &[u8]) -> Vec<u8> {
        let mut t = MemTransport::default();
        wire::write_frame(&mut t, &mut Vec::new(), p, None).unwrap();
        t.output
    }

    /// Python 3.11's `answer_challenge` as bytes: bare HMAC-MD5 over what
    /// follows `#CHALLENGE#`.
    #[test]
    fn legacy_response_is_bare_md5() {
        let key = b"secret";
        let msg = [3u8; 20];
        let r = create_response(key, &msg).unwrap();
        assert_eq!(r.len(), 16);
        assert!(verify_response(key, &msg, &r));
        assert!(!verify_response(b"other", &msg, &r));
        // RFC 2104 test case 2 (HMAC-MD5, key "Jefe").
        let mac = Digest::Md5.mac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            mac,
            [
                0x75, 0x0c, 0x78, 0x3e, 0x6a, 0xb0, 0xb5, 0x03, 0xea, 0xa8, 0x6e, 0x31, 0x0a, 0x5d,
                0xb7, 0x38
            ]
        );
    }

    #[test]
    fn modern_response_is_prefixed_and_covers_the_prefix() {
        let key = b"k";
        let msg = challenge_message(Challenge::Sha256, |b| b.fill(9));
        assert!(msg.starts_with(b"{sha256}"));
        assert_eq!(msg.len(), 8 + 40);
        let r = create_response(key, &msg).unwrap();
        assert!(r.starts_with(b"{sha256}"));
        assert_eq!(&r[8..], &Digest::Sha256.mac(key, &msg)[..]);
        assert!(verify_response(key, &msg, &r));
        // An md5 answer over the whole message (a 3.11 peer) is accepted.
        assert!(verify_response(key, &msg, &Digest::Md5.mac(key, &msg)));
        // Over the random part only: refused.
        assert!(!verify_response(key, &msg, &{
            let mut r = b"{sha256}".to_vec();
            r.extend(Digest::Sha256.mac(key, &msg[8..]));
            r
        }));
    }

    #[test]
    fn unknown_digests_are_refused() {
        assert!(matches!(
            create_response(b"k", b"{sha3_256}0123456789012345678901234567890123456789"),
            Err(ConnectionError::BadChallenge)
        ));
        assert!(matches!(
            create_response(b"k", b"0123456789012345678901234567890123456789"),
            Err(ConnectionError::BadChallenge)
        ));
        assert!(!verify_response(b"k", b"m", b"{nope}aaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn answer_then_welcome_over_memory() {
        let key = b"key";
        let msg = challenge_message(Challenge::Sha256, |b| b.fill(1));
        let mut input = frame(&[CHALLENGE, &msg[..]].concat());
        input.extend(frame(WELCOME));
        let mut t = MemTransport {
            input,
            ..Default::default()
        };
        let mut r = FrameReader::default();
        answer_challenge(&mut t, &mut r, key, None).unwrap();
        assert_eq!(t.output, frame(&create_response(key, &msg).unwrap()));
    }

    #[test]
    fn deliver_refuses_a_wrong_answer() {
        let mut t = MemTransport {
            input: frame(&[0u8; 16]),
            ..Default::default()
        };
        let mut r = FrameReader::default();
        let e = deliver_challenge(&mut t, &mut r, b"k", Challenge::Legacy, |b| b.fill(0), None);
        assert!(matches!(e, Err(ConnectionError::AuthFailed)));
        assert!(t.output.ends_with(&frame(FAILURE)));
    }

    #[test]
    fn an_oversized_handshake_frame_is_refused() {
        let mut t = MemTransport {
            input: frame(&[b'#'; 257]),
            ..Default::default()
        };
        let mut r = FrameReader::default();
        assert!(matches!(
            answer_challenge(&mut t, &mut r, b"k", None),
            Err(ConnectionError::BadChallenge)
        ));
    }
}
