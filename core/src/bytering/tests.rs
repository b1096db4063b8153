extern crate std;
use super::*;
use crate::test_util::{buf, bytes, Line};
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

fn mem(capacity: u64) -> Vec<Line> {
    buf(ByteRing::memory_size(capacity).unwrap())
}

/// A tiny xorshift PRNG.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A message whose bytes depend on `seed` and position.
fn msg(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) >> 1) as u8)
        .collect()
}

/// Writes raw bytes at `off` from the start of the region.
fn scribble(ring: &ByteRing<'_>, off: usize, val: &[u8]) {
    // SAFETY: test-only: the data starts DATA bytes into the region,
    // the offset lies in the test buffer, and nothing reads these bytes
    // concurrently.
    unsafe {
        let base = ring.data().sub(DATA);
        ptr::copy_nonoverlapping(val.as_ptr(), base.add(off), val.len());
    }
}

const DATA: usize = 640;

#[test]
fn capacity_and_max_frame_rules() {
    for bad in [0u64, 8, 32, 63, 72, 100, 3 << 10] {
        assert_eq!(ByteRing::memory_size(bad), None, "{bad}");
        assert_eq!(ByteRing::max_frame_for(bad), None);
    }
    assert_eq!(ByteRing::memory_size(64), Some(640 + 64));
    assert_eq!(ByteRing::max_frame_for(4 << 20), Some((2 << 20) - 8));
    let mut m = mem(64);
    let r = Region::from_mut_slice(bytes(&mut m));
    assert_eq!(
        ByteRing::create(r, 64, 25).unwrap_err(),
        InitError::InvalidCapacity { capacity: 64 }
    );
    assert_eq!(
        ByteRing::create(r, 96, 8).unwrap_err(),
        InitError::InvalidCapacity { capacity: 96 }
    );
    assert!(matches!(
        ByteRing::create(r, 256, 8),
        Err(InitError::TooSmall { .. })
    ));
    let ring = ByteRing::create(r, 64, 24).unwrap();
    assert_eq!((ring.capacity(), ring.max_frame()), (64, 24));
    let again = ByteRing::attach(r).unwrap();
    assert_eq!((again.capacity(), again.max_frame()), (64, 24));
    let timed = ByteRing::attach_timeout(r, Duration::from_millis(1)).unwrap();
    assert_eq!(timed.capacity(), 64);
    assert!(std::format!("{ring:?}").contains("max_frame: 24"));
}

#[test]
fn attach_rejects_bad_max_frame_and_unready() {
    let mut m = mem(64);
    let r = Region::from_mut_slice(bytes(&mut m));
    assert_eq!(ByteRing::attach(r).unwrap_err(), AttachError::NotReady);
    assert_eq!(
        ByteRing::attach_timeout(r, Duration::from_millis(5)).unwrap_err(),
        AttachError::NotReady
    );
    let ring = ByteRing::create(r, 64, 24).unwrap();
    scribble(&ring, 512 + 16, &25u64.to_le_bytes());
    assert_eq!(
        ByteRing::attach(r).unwrap_err(),
        AttachError::CorruptCapacity { capacity: 64 }
    );
}

#[test]
fn round_trip_edge_sizes() {
    let mut m = mem(256);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 256, 120).unwrap();
    let (mut tx, mut rx) = ring.split().unwrap();
    let mut buf = [0u8; 120];
    for round in 0..6u64 {
        // Every length around the inline copy of 8 to 16 bytes.
        for len in (0usize..=24).chain([120]) {
            let m = msg(len as u64 + round, len);
            tx.try_send(&m).unwrap();
            assert_eq!(rx.peek_len(), Ok(len));
            let n = rx.try_recv_into(&mut buf).unwrap();
            assert_eq!(&buf[..n], &m[..]);
            // Zero-copy both ways.
            let mut w = tx.try_reserve(len).unwrap();
            assert_eq!(w.len(), len);
            w.copy_from_slice(&m);
            w.commit();
            let r = rx.try_read().unwrap();
            assert_eq!(&*r, &m[..]);
            r.release();
        }
    }
    assert_eq!(rx.try_recv_into(&mut buf), Err(RecvError::Empty));
}

/// Predicts the ring's placement: (tail, head) positions and the
/// advance of each queued frame.
struct Model {
    cap: u64,
    max: u64,
    tail: u64,
    head: u64,
    q: VecDeque<(Vec<u8>, u64)>,
}

impl Model {
    fn send(&mut self, m: &[u8]) -> Result<(), SendError> {
        let len = m.len() as u64;
        if len > self.max {
            return Err(SendError::TooLarge { len, max: self.max });
        }
        let size = frame_size(len);
        let room = self.cap - self.tail % self.cap;
        let adv = if size <= room { size } else { room + size };
        if adv > self.cap - (self.tail - self.head) {
            return Err(SendError::Full);
        }
        self.tail += adv;
        self.q.push_back((m.to_vec(), adv));
        Ok(())
    }
    fn recv(&mut self) -> Option<Vec<u8>> {
        let (m, adv) = self.q.pop_front()?;
        self.head += adv;
        Some(m)
    }
}

#[test]
fn random_sizes_against_model() {
    for (cap, max) in [(64u64, 24u64), (128, 56), (1024, 300), (4096, 2040)] {
        let mut m = mem(cap);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), cap, max).unwrap();
        let (mut tx, mut rx) = ring.split().unwrap();
        let mut model = Model {
            cap,
            max,
            tail: 0,
            head: 0,
            q: VecDeque::new(),
        };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ cap);
        let mut buf = vec![0u8; max as usize + 8];
        let mut wraps = 0;
        for step in 0..20_000u64 {
            let op = rng.below(10);
            if op < 5 {
                let len = rng.below(max + 4) as usize;
                let data = msg(step, len);
                let expect = model.send(&data);
                let before = tx.tail;
                let got = if op == 0 {
                    tx.try_reserve(len).map(|mut w| {
                        w.copy_from_slice(&data);
                        w.commit();
                    })
                } else {
                    tx.try_send(&data)
                };
                assert_eq!(got, expect, "step {step}");
                if got.is_ok() && tx.tail % cap < before % cap {
                    wraps += 1;
                }
            } else if op == 5 {
                // An abandoned reservation publishes nothing.
                let len = rng.below(max + 1) as usize;
                if let Ok(mut w) = tx.try_reserve(len) {
                    w.fill(0xee);
                }
            } else if op == 6 {
                let want = model.q.front().map(|(m, _)| m.len());
                match rx.peek_len() {
                    Ok(n) => assert_eq!(Some(n), want),
                    Err(e) => assert_eq!((e, want), (RecvError::Empty, None)),
                }
            } else if op == 7 {
                let expect = model.recv();
                match rx.try_read() {
                    Ok(r) => assert_eq!(Some(&*r), expect.as_deref()),
                    Err(e) => assert_eq!((e, expect), (RecvError::Empty, None)),
                }
            } else {
                let expect = model.recv();
                match rx.try_recv_into(&mut buf) {
                    Ok(n) => assert_eq!(Some(&buf[..n]), expect.as_deref()),
                    Err(e) => assert_eq!((e, expect), (RecvError::Empty, None)),
                }
            }
        }
        assert!(wraps > 50, "cap {cap}: only {wraps} wraps");
    }
}

#[test]
fn full_and_empty_edges() {
    let mut m = mem(64);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
    let (mut tx, mut rx) = ring.split().unwrap();
    let mut buf = [0u8; 24];
    assert_eq!(rx.try_recv_into(&mut buf), Err(RecvError::Empty));
    assert_eq!(rx.peek_len(), Err(RecvError::Empty));
    assert!(matches!(rx.try_read(), Err(RecvError::Empty)));
    // Two frames of 32 bytes fill 64 exactly.
    tx.try_send(&[1; 24]).unwrap();
    tx.try_send(&[2; 17]).unwrap();
    assert_eq!(tx.try_send(&[]), Err(SendError::Full));
    assert!(matches!(tx.try_reserve(0), Err(SendError::Full)));
    assert_eq!(
        tx.send_timeout(&[3], Duration::from_millis(5)),
        Err(SendError::Full)
    );
    assert!(matches!(
        tx.reserve_timeout(1, Duration::ZERO),
        Err(SendError::Full)
    ));
    assert_eq!(rx.try_recv_into(&mut buf), Ok(24));
    // Now at offset 0 after wrapping exactly: 32 free.
    tx.try_send(&[3; 24]).unwrap();
    assert_eq!(tx.try_send(&[]), Err(SendError::Full));
    assert_eq!(rx.try_recv_into(&mut buf), Ok(17));
    assert_eq!(&buf[..17], &[2; 17]);
    assert_eq!(rx.try_recv_into(&mut buf), Ok(24));
    assert_eq!(buf, [3; 24]);
    assert_eq!(
        rx.recv_into_timeout(&mut buf, Duration::from_millis(5)),
        Err(RecvError::Empty)
    );
    assert!(matches!(
        rx.read_timeout(Duration::ZERO),
        Err(RecvError::Empty)
    ));
    // Head and tail at 96 (offset 32): a 24-byte frame fills 32..64
    // exactly, with no wrap marker, and the next frame starts at 0.
    tx.try_send(&[4; 24]).unwrap();
    tx.try_send(&[5; 8]).unwrap();
    assert_eq!(tx.tail, 144);
    assert_eq!(ring.read_word(0), 8);
    assert_eq!(rx.try_recv_into(&mut buf), Ok(24));
    assert_eq!(rx.try_recv_into(&mut buf), Ok(8));
    assert_eq!(&buf[..8], &[5; 8]);
}

#[test]
fn wrap_marker_is_written_and_skipped() {
    let mut m = mem(64);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
    let (mut tx, mut rx) = ring.split().unwrap();
    let mut buf = [0u8; 24];
    tx.try_send(&[1; 24]).unwrap(); // 0..32
    tx.try_send(&[2; 8]).unwrap(); // 32..48
    assert_eq!(rx.try_recv_into(&mut buf), Ok(24));
    // 24 bytes of payload need 32, only 16 left before the end: wrap.
    tx.try_send(&[3; 24]).unwrap();
    assert_eq!(ring.read_word(48), WRAP);
    assert_eq!(ring.read_word(0), 24);
    assert_eq!(tx.tail, 48 + 16 + 32);
    assert_eq!(rx.try_recv_into(&mut buf), Ok(8));
    assert_eq!(rx.try_recv_into(&mut buf), Ok(24));
    assert_eq!(buf, [3; 24]);
    assert_eq!(rx.head, 96);
}

#[test]
fn too_large_is_refused() {
    let mut m = mem(128);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 128, 40).unwrap();
    let (mut tx, _rx) = ring.split().unwrap();
    let e = SendError::TooLarge { len: 41, max: 40 };
    assert_eq!(tx.try_send(&[0; 41]), Err(e));
    assert_eq!(tx.send(&[0; 41]), Err(e));
    assert!(matches!(tx.try_reserve(41), Err(x) if x == e));
    assert!(matches!(
        tx.reserve(1000),
        Err(SendError::TooLarge { len: 1000, max: 40 })
    ));
    assert_eq!(tx.max_frame(), 40);
    tx.try_send(&[0; 40]).unwrap();
}

#[test]
fn buffer_too_small_keeps_the_frame() {
    let mut m = mem(128);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 128, 40).unwrap();
    let (mut tx, mut rx) = ring.split().unwrap();
    tx.try_send(b"0123456789").unwrap();
    let mut small = [0u8; 9];
    let e = RecvError::BufferTooSmall { needed: 10 };
    assert_eq!(rx.try_recv_into(&mut small), Err(e));
    assert_eq!(rx.recv_into(&mut small), Err(e));
    assert_eq!(rx.recv_into_timeout(&mut small, Duration::ZERO), Err(e));
    assert_eq!(rx.peek_len(), Ok(10));
    let mut big = [0u8; 10];
    assert_eq!(rx.try_recv_into(&mut big), Ok(10));
    assert_eq!(&big, b"0123456789");
}

#[test]
fn reserve_commit_and_abort() {
    let mut m = mem(128);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 128, 40).unwrap();
    let (mut tx, mut rx) = ring.split().unwrap();
    {
        let mut w = tx.try_reserve(5).unwrap();
        w.copy_from_slice(b"abort");
        assert!(std::format!("{w:?}").contains("len: 5"));
    } // dropped: nothing published
    assert_eq!(rx.peek_len(), Err(RecvError::Empty));
    let mut w = tx.reserve(6).unwrap();
    w.copy_from_slice(b"commit");
    w.commit();
    let mut w = tx.reserve_timeout(3, Duration::from_millis(1)).unwrap();
    w.copy_from_slice(b"two");
    w.commit();
    let r = rx.read().unwrap();
    assert_eq!(&*r, b"commit");
    drop(r);
    let r = rx.read_timeout(Duration::from_millis(1)).unwrap();
    assert_eq!(&*r, b"two");
    // Not released yet: the frame is still there.
    assert_eq!(r.len(), 3);
    r.release();
    assert_eq!(rx.peek_len(), Err(RecvError::Empty));
}

#[test]
fn dropped_sender_drains_then_disconnects() {
    let mut m = mem(128);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 128, 40).unwrap();
    let (mut tx, mut rx) = ring.split().unwrap();
    tx.try_send(b"a").unwrap();
    tx.try_send(b"bc").unwrap();
    drop(tx);
    let mut buf = [0u8; 40];
    assert_eq!(rx.try_recv_into(&mut buf), Ok(1));
    assert_eq!(rx.recv_into(&mut buf), Ok(2));
    assert_eq!(rx.try_recv_into(&mut buf), Err(RecvError::Disconnected));
    assert_eq!(rx.recv_into(&mut buf), Err(RecvError::Disconnected));
    assert!(matches!(rx.read(), Err(RecvError::Disconnected)));
    assert_eq!(rx.peek_len(), Err(RecvError::Disconnected));
    // A new sender reconnects and goes on from the tail.
    let mut tx = ring.sender().unwrap();
    tx.try_send(b"def").unwrap();
    assert_eq!(rx.try_recv_into(&mut buf), Ok(3));
    assert_eq!(&buf[..3], b"def");
}

#[test]
fn dropped_receiver_disconnects_sender() {
    let mut m = mem(64);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
    let (mut tx, rx) = ring.split().unwrap();
    tx.try_send(b"x").unwrap();
    drop(rx);
    assert_eq!(tx.try_send(b"y"), Err(SendError::Disconnected));
    assert_eq!(tx.send(b"y"), Err(SendError::Disconnected));
    assert!(matches!(tx.try_reserve(1), Err(SendError::Disconnected)));
    // A new receiver gets the frame that was left.
    let mut rx = ring.receiver().unwrap();
    let mut buf = [0u8; 24];
    assert_eq!(rx.try_recv_into(&mut buf), Ok(1));
    tx.try_send(b"y").unwrap();
}

#[test]
fn blocked_calls_are_woken_by_drop() {
    let mut m = mem(64);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
    let (tx, mut rx) = ring.split().unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(10));
            drop(tx);
        });
        let mut buf = [0u8; 24];
        assert_eq!(rx.recv_into(&mut buf), Err(RecvError::Disconnected));
    });
    drop(rx);
    let (mut tx, rx) = ring.split().unwrap();
    tx.try_send(&[0; 24]).unwrap();
    tx.try_send(&[0; 24]).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(10));
            drop(rx);
        });
        assert_eq!(tx.send(&[0; 24]), Err(SendError::Disconnected));
    });
}

/// A pid that cannot exist (pid_max is at most 2^22).
const DEAD_PID: u32 = (1 << 22) - 5;

#[test]
fn dead_peer_is_noticed_by_blocking_calls() {
    let mut m = mem(64);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
    let mut rx = ring.receiver().unwrap();
    // The producer role is held by a process that died.
    scribble(
        &ring,
        512,
        &crate::role::dead_identity(DEAD_PID).to_le_bytes(),
    );
    let mut buf = [0u8; 24];
    assert_eq!(rx.try_recv_into(&mut buf), Err(RecvError::Empty));
    assert_eq!(
        rx.recv_into_timeout(&mut buf, Duration::from_secs(30)),
        Err(RecvError::Disconnected)
    );
    assert_eq!(rx.recv_into(&mut buf), Err(RecvError::Disconnected));
    // The dead sender's role can be taken over; the receiver then sees
    // Empty again.
    let mut tx = ring.sender().unwrap();
    assert_eq!(rx.try_recv_into(&mut buf), Err(RecvError::Empty));
    // Same for a dead receiver, once the ring is full.
    drop(rx);
    scribble(
        &ring,
        520,
        &crate::role::dead_identity(DEAD_PID).to_le_bytes(),
    );
    tx.try_send(&[0; 24]).unwrap();
    tx.try_send(&[0; 24]).unwrap();
    assert_eq!(
        tx.send_timeout(&[1], Duration::from_secs(30)),
        Err(SendError::Disconnected)
    );
    let mut rx = ring.receiver().unwrap();
    assert_eq!(rx.try_recv_into(&mut buf), Ok(24));
}

#[test]
fn roles_are_unique() {
    let mut m = mem(64);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
    let me = crate::sync::current_pid();
    let tx = ring.sender().unwrap();
    assert_eq!(ring.sender().unwrap_err(), RoleTaken { pid: me });
    assert_eq!(ring.split().unwrap_err(), RoleTaken { pid: me });
    let rx = ring.receiver().unwrap();
    assert_eq!(ring.receiver().unwrap_err(), RoleTaken { pid: me });
    drop(tx);
    // split refuses without claiming the free sender role.
    assert_eq!(ring.split().unwrap_err(), RoleTaken { pid: me });
    let tx = ring.sender().unwrap();
    drop((tx, rx));
    let (tx, rx) = ring.split().unwrap();
    assert!(std::format!("{tx:?} {rx:?}").contains("FrameReceiver"));
}

/// Builds a ring, claims both roles, and hands them to `f`.
fn with_ring(cap: u64, max: u64, f: impl FnOnce(ByteRing<'_>, FrameSender<'_>, FrameReceiver<'_>)) {
    let mut m = mem(cap);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), cap, max).unwrap();
    let (tx, rx) = ring.split().unwrap();
    f(ring, tx, rx);
}

fn corrupt(rx: &mut FrameReceiver<'_>) -> Corruption {
    let mut buf = [0u8; 64];
    let Err(RecvError::Corrupt(c)) = rx.try_recv_into(&mut buf) else {
        panic!("not corrupt");
    };
    // Sticky, whatever the call.
    assert_eq!(rx.peek_len(), Err(RecvError::Corrupt(c)));
    assert!(matches!(rx.try_read(), Err(RecvError::Corrupt(x)) if x == c));
    assert_eq!(rx.recv_into(&mut buf), Err(RecvError::Corrupt(c)));
    c
}

#[test]
fn corrupt_length_above_max_frame() {
    with_ring(64, 24, |ring, mut tx, mut rx| {
        tx.try_send(&[1; 8]).unwrap();
        scribble(&ring, DATA, &25u64.to_le_bytes());
        assert_eq!(
            corrupt(&mut rx),
            Corruption::LengthTooLarge {
                pos: 0,
                len: 25,
                max: 24
            }
        );
    });
    // The frame after a wrap marker too.
    with_ring(64, 24, |ring, mut tx, mut rx| {
        tx.try_send(&[1; 24]).unwrap();
        tx.try_send(&[1; 8]).unwrap();
        rx.try_recv_into(&mut [0; 24]).unwrap();
        tx.try_send(&[3; 24]).unwrap();
        scribble(&ring, DATA, &u64::MAX.to_le_bytes());
        rx.try_recv_into(&mut [0; 24]).unwrap();
        assert_eq!(
            corrupt(&mut rx),
            Corruption::LengthTooLarge {
                pos: 64,
                len: u64::MAX,
                max: 24
            }
        );
    });
}

#[test]
fn corrupt_frame_past_tail() {
    with_ring(64, 24, |ring, mut tx, mut rx| {
        tx.try_send(&[1; 8]).unwrap(); // 16 bytes
        scribble(&ring, DATA, &9u64.to_le_bytes()); // would need 24
        assert_eq!(
            corrupt(&mut rx),
            Corruption::PastTail {
                pos: 0,
                end: 24,
                tail: 16
            }
        );
    });
    // A wrap marker with nothing published after it.
    with_ring(64, 24, |ring, mut tx, mut rx| {
        tx.try_send(&[1; 24]).unwrap(); // 0..32
        tx.try_send(&[1; 16]).unwrap(); // 32..56
        rx.try_recv_into(&mut [0; 24]).unwrap();
        rx.try_recv_into(&mut [0; 24]).unwrap();
        tx.try_send(&[1; 0]).unwrap(); // 56..64
        scribble(&ring, DATA + 56, &WRAP.to_le_bytes());
        assert_eq!(
            corrupt(&mut rx),
            Corruption::PastTail {
                pos: 56,
                end: 72,
                tail: 64
            }
        );
    });
    // The tail claims more than was written: the frame after the real
    // one (a forged header) would end past it.
    with_ring(64, 24, |ring, mut tx, mut rx| {
        tx.try_send(&[1; 8]).unwrap(); // 0..16
        scribble(&ring, 128, &24u64.to_le_bytes());
        scribble(&ring, DATA + 16, &8u64.to_le_bytes());
        assert_eq!(rx.try_recv_into(&mut [0; 24]), Ok(8));
        assert_eq!(
            corrupt(&mut rx),
            Corruption::PastTail {
                pos: 16,
                end: 32,
                tail: 24
            }
        );
    });
}

#[test]
fn corrupt_frame_crossing_the_end() {
    with_ring(64, 24, |ring, mut tx, mut rx| {
        tx.try_send(&[1; 24]).unwrap(); // 0..32
        tx.try_send(&[1; 16]).unwrap(); // 32..56
        rx.try_recv_into(&mut [0; 24]).unwrap();
        rx.try_recv_into(&mut [0; 24]).unwrap();
        tx.try_send(&[1; 0]).unwrap(); // 56..64
                                       // Claim 16 bytes at 56: crosses 64. Make the tail allow it.
        scribble(&ring, DATA + 56, &16u64.to_le_bytes());
        scribble(&ring, 128, &88u64.to_le_bytes());
        assert_eq!(
            corrupt(&mut rx),
            Corruption::CrossesEnd { pos: 56, len: 16 }
        );
    });
}

#[test]
fn corrupt_wrap_marker_where_frame_fits() {
    with_ring(64, 24, |ring, mut tx, mut rx| {
        tx.try_send(&[1; 8]).unwrap(); // 0..16
        tx.try_send(&[2; 8]).unwrap(); // 16..32
        rx.try_recv_into(&mut [0; 24]).unwrap();
        rx.try_recv_into(&mut [0; 24]).unwrap();
        // A marker at 32 (32 bytes before the end), followed by the
        // 16-byte frame still at 0, published by a forged tail.
        scribble(&ring, DATA + 32, &WRAP.to_le_bytes());
        scribble(&ring, 128, &(32u64 + 32 + 16).to_le_bytes());
        assert_eq!(corrupt(&mut rx), Corruption::BadWrap { pos: 32 });
    });
    // A marker at offset 0 can never be right.
    with_ring(64, 24, |ring, mut tx, mut rx| {
        tx.try_send(&[1; 24]).unwrap();
        tx.try_send(&[1; 24]).unwrap();
        scribble(&ring, DATA, &WRAP.to_le_bytes());
        assert_eq!(
            corrupt(&mut rx),
            Corruption::PastTail {
                pos: 0,
                end: 72,
                tail: 64
            }
        );
    });
}

#[test]
fn corrupt_distance_and_misaligned_tail() {
    with_ring(64, 24, |ring, _tx, mut rx| {
        scribble(&ring, 128, &72u64.to_le_bytes());
        assert_eq!(corrupt(&mut rx), Corruption::Distance { head: 0, tail: 72 });
    });
    with_ring(64, 24, |ring, _tx, mut rx| {
        // Behind the head: a huge wrapping distance.
        scribble(&ring, 128, &u64::MAX.wrapping_sub(7).to_le_bytes());
        assert!(matches!(corrupt(&mut rx), Corruption::Distance { .. }));
    });
    with_ring(64, 24, |ring, _tx, mut rx| {
        scribble(&ring, 128, &3u64.to_le_bytes());
        assert_eq!(
            corrupt(&mut rx),
            Corruption::Misaligned { head: 0, tail: 3 }
        );
    });
}

#[test]
fn corrupt_head_found_at_claim() {
    let mut m = mem(64);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
    scribble(&ring, 256, &5u64.to_le_bytes());
    let mut tx = ring.sender().unwrap();
    // The sender sees an impossible head: no room, no write.
    assert_eq!(tx.try_send(b"x"), Err(SendError::Full));
    let mut rx = ring.receiver().unwrap();
    assert_eq!(
        corrupt(&mut rx),
        Corruption::Misaligned { head: 5, tail: 0 }
    );
}

#[test]
fn sender_never_writes_outside_the_data() {
    // Garbage tail at claim, near the wrap of u64.
    let mut m = mem(64);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), 64, 24).unwrap();
    let start = u64::MAX - 15;
    scribble(&ring, 128, &start.to_le_bytes());
    scribble(&ring, 256, &start.to_le_bytes());
    let (mut tx, mut rx) = ring.split().unwrap();
    let mut buf = [0u8; 24];
    for i in 0..50u8 {
        tx.try_send(&[i; 13]).unwrap();
        assert_eq!(rx.try_recv_into(&mut buf), Ok(13));
        assert_eq!(&buf[..13], &[i; 13]);
    }
    assert!(rx.head < start);
}

#[test]
fn two_threads_stress_with_checksums() {
    const N: u64 = 30_000;
    // `Spin::NONE` sends every wait through the bells and their naps.
    for (cap, max, spin) in [
        (64u64, 24u64, Spin::DEFAULT),
        (64, 24, Spin::NONE),
        (4096, 1000, Spin::DEFAULT),
        (4096, 1000, Spin::NONE),
    ] {
        let mut m = mem(cap);
        let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), cap, max).unwrap();
        let (mut tx, mut rx) = ring.split().unwrap();
        tx.set_spin(spin);
        rx.set_spin(spin);
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut rng = Rng(42 + cap);
                for i in 0..N {
                    let len = rng.below(max + 1) as usize;
                    let mut data = msg(i, len);
                    if len >= 8 {
                        data[..8].copy_from_slice(&i.to_le_bytes());
                    }
                    if i % 3 == 0 {
                        let mut w = tx.reserve(len).unwrap();
                        w.copy_from_slice(&data);
                        w.commit();
                    } else {
                        tx.send(&data).unwrap();
                    }
                }
            });
            let mut rng = Rng(42 + cap);
            let mut buf = vec![0u8; max as usize];
            let (mut sum_got, mut sum_want) = (0u64, 0u64);
            for i in 0..N {
                let len = rng.below(max + 1) as usize;
                let want = {
                    let mut d = msg(i, len);
                    if len >= 8 {
                        d[..8].copy_from_slice(&i.to_le_bytes());
                    }
                    d
                };
                let got: Vec<u8> = if i % 2 == 0 {
                    rx.read().unwrap().to_vec()
                } else {
                    let n = rx.recv_into(&mut buf).unwrap();
                    buf[..n].to_vec()
                };
                for (k, b) in got.iter().enumerate() {
                    sum_got = sum_got
                        .wrapping_mul(131)
                        .wrapping_add(u64::from(*b) ^ k as u64);
                }
                for (k, b) in want.iter().enumerate() {
                    sum_want = sum_want
                        .wrapping_mul(131)
                        .wrapping_add(u64::from(*b) ^ k as u64);
                }
                assert_eq!(got.len(), len, "frame {i}");
                assert_eq!(sum_got, sum_want, "frame {i}");
            }
            let mut buf = [0u8; 1];
            assert_eq!(rx.recv_into(&mut buf), Err(RecvError::Disconnected));
        });
    }
}

#[test]
fn one_mib_message_in_a_four_mib_ring() {
    let cap = 4u64 << 20;
    let mut m = mem(cap);
    let ring = ByteRing::create(Region::from_mut_slice(bytes(&mut m)), cap, 1 << 20).unwrap();
    let (mut tx, mut rx) = ring.split().unwrap();
    let big = msg(7, 1 << 20);
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..9 {
        tx.try_send(&big).unwrap();
        tx.try_send(&big[..1000]).unwrap();
        assert_eq!(rx.try_recv_into(&mut buf), Ok(1 << 20));
        assert!(buf == big);
        assert_eq!(&*rx.try_read().unwrap(), &big[..1000]);
    }
}

#[test]
fn errors_display_lowercase() {
    let all = [
        std::format!("{}", SendError::Full),
        std::format!("{}", SendError::TooLarge { len: 9, max: 8 }),
        std::format!("{}", SendError::Disconnected),
        std::format!("{}", RecvError::Empty),
        std::format!("{}", RecvError::Disconnected),
        std::format!("{}", RecvError::BufferTooSmall { needed: 3 }),
        std::format!("{}", RecvError::Corrupt(Corruption::BadWrap { pos: 8 })),
        std::format!(
            "{}",
            Corruption::LengthTooLarge {
                pos: 0,
                len: 1,
                max: 0
            }
        ),
        std::format!(
            "{}",
            Corruption::PastTail {
                pos: 0,
                end: 1,
                tail: 0
            }
        ),
        std::format!("{}", Corruption::CrossesEnd { pos: 0, len: 1 }),
        std::format!("{}", Corruption::Distance { head: 0, tail: 1 }),
        std::format!("{}", Corruption::Misaligned { head: 0, tail: 1 }),
    ];
    for s in all {
        assert!(s.starts_with(|c: char| c.is_lowercase()), "{s}");
        assert!(!s.ends_with('.'), "{s}");
    }
}
