extern crate std;

use super::*;
use crate::mpmc::slot::{busy, free_word, BUSY};
use crate::test_util::{buf, bytes, Line};
use std::format;
use std::vec;
use std::vec::Vec;

fn mem(cap: u64, max: u64) -> Vec<Line> {
    buf(MsgQueue::memory_size(cap, max).unwrap())
}

fn with_queue<R>(cap: u64, max: u64, f: impl FnOnce(MsgQueue<'_>) -> R) -> R {
    let mut b = mem(cap, max);
    f(MsgQueue::create(Region::from_mut_slice(bytes(&mut b)), cap, max).unwrap())
}

/// The message of number `i`: its length cycles over 0..=max and its bytes
/// depend on `i`.
fn message(i: u64, max: usize) -> Vec<u8> {
    let len = (i.wrapping_mul(0x9e37_79b9) >> 3) as usize % (max + 1);
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

#[test]
fn memory_size_and_create_limits() {
    assert_eq!(MsgQueue::memory_size(4, 100), Some(640 + 4 * 32 + 4 * 104));
    // The data area starts 64-aligned.
    assert_eq!(MsgQueue::memory_size(1, 0), Some(704));
    assert_eq!(MsgQueue::memory_size(0, 8), None);
    assert_eq!(MsgQueue::memory_size(1 << 33, 8), None);
    assert_eq!(MsgQueue::memory_size(1, MAX_MESSAGE + 1), None);
    let mut b = mem(4, 64);
    let r = Region::from_mut_slice(bytes(&mut b));
    assert!(matches!(
        MsgQueue::create(r, 0, 8),
        Err(InitError::InvalidCapacity { capacity: 0 })
    ));
    let r = Region::from_mut_slice(bytes(&mut b));
    assert!(matches!(
        MsgQueue::create(r, 4, MAX_MESSAGE + 1),
        Err(InitError::UnsupportedType)
    ));
    let r = Region::from_mut_slice(bytes(&mut b));
    assert!(matches!(
        MsgQueue::create(r, 4, 4096),
        Err(InitError::TooSmall { .. })
    ));
}

/// A queue made in memory marked zeroed writes no slot: the all-zero slot
/// is a free one, for every capacity; later laps work.
#[test]
fn a_queue_in_zeroed_memory_starts_empty_and_wraps() {
    for cap in [1u64, 2, 3, 5, 8] {
        for max in [0usize, 1, 7, 8, 100] {
            let mut b = mem(cap, max as u64);
            // SAFETY: `buf` is zero-filled and nothing else writes it.
            let r = unsafe { Region::from_mut_slice(bytes(&mut b)).assume_zeroed() };
            let q = MsgQueue::create(r, cap, max as u64).unwrap();
            let mut out = vec![0u8; max];
            assert_eq!(q.try_recv_into(&mut out), Err(RecvError::Empty));
            let mut n = 0u64;
            for lap in 0..4 * cap + 3 {
                for k in 0..cap {
                    q.try_send(&message(n + k, max)).unwrap();
                }
                assert_eq!(q.try_send(&[]), Err(SendError::Full));
                assert!(q.is_full());
                for k in 0..cap {
                    let got = q.try_recv_into(&mut out).unwrap();
                    assert_eq!(&out[..got], &message(n + k, max)[..], "cap {cap} lap {lap}");
                }
                n += cap;
                // An odd shift of the positions against the slots.
                q.try_send(&message(n, max)).unwrap();
                let r = q.try_recv_ref().unwrap();
                assert_eq!(&*r, &message(n, max)[..]);
                drop(r);
                n += 1;
            }
            assert!(q.is_empty());
        }
    }
}

#[test]
fn sizes_are_checked() {
    with_queue(2, 10, |q| {
        assert_eq!(q.max_message(), 10);
        assert_eq!(
            q.try_send(&[0; 11]),
            Err(SendError::TooLarge { len: 11, max: 10 })
        );
        assert_eq!(
            q.send_timeout(&[0; 11], Duration::from_millis(1)),
            Err(SendError::TooLarge { len: 11, max: 10 })
        );
        q.try_send(&[1; 10]).unwrap();
        q.try_send(&[]).unwrap();
        let mut small = [0u8; 9];
        assert_eq!(
            q.try_recv_into(&mut small),
            Err(RecvError::BufferTooSmall { needed: 10 })
        );
        // Nothing was taken.
        assert_eq!(q.len(), 2);
        let mut big = [0u8; 64];
        assert_eq!(q.try_recv_into(&mut big), Ok(10));
        assert_eq!(&big[..10], &[1; 10]);
        assert_eq!(q.recv_into(&mut big), Ok(0));
        // A writer committed past max_message is skipped.
        let w = q.try_send_ref().unwrap();
        assert_eq!(w.len(), 10);
        assert_eq!(w.commit(11), Err(SendError::TooLarge { len: 11, max: 10 }));
        assert_eq!(q.try_recv_into(&mut big), Err(RecvError::Empty));
        q.try_send(b"after").unwrap();
        assert_eq!(q.try_recv_into(&mut big), Ok(5));
    });
}

#[test]
fn guards_write_and_read_in_place() {
    with_queue(4, 16, |q| {
        let mut w = q.try_send_ref().unwrap();
        w[..3].copy_from_slice(b"abc");
        let pos = w.position();
        w.commit(3).unwrap();
        // Dropped uncommitted: skipped.
        drop(q.try_send_ref().unwrap());
        q.try_send(b"d").unwrap();
        let r = q.try_recv_ref().unwrap();
        assert_eq!((&*r, r.position()), (&b"abc"[..], pos));
        drop(r);
        let r = q.recv_ref_deadline(None).unwrap();
        assert_eq!(&*r, b"d");
        assert_eq!(r.position(), pos + 2);
        drop(r);
        assert!(matches!(q.try_recv_ref(), Err(RecvError::Empty)));
        assert!(format!("{q:?}").contains("max_message: 16"));
    });
}

#[test]
fn timeouts_and_close() {
    with_queue(1, 8, |q| {
        let mut buf = [0u8; 8];
        assert_eq!(
            q.recv_into_timeout(&mut buf, Duration::from_millis(5)),
            Err(RecvError::Empty)
        );
        q.send(b"1").unwrap();
        assert_eq!(
            q.send_timeout(b"2", Duration::from_millis(5)),
            Err(SendError::Full)
        );
        assert!(matches!(
            q.send_ref_deadline(Some(Deadline::after(Duration::from_millis(5)))),
            Err(SendError::Full)
        ));
        q.close();
        assert!(q.is_closed());
        assert_eq!(q.try_send(b"3"), Err(SendError::Disconnected));
        assert_eq!(q.send(b"3"), Err(SendError::Disconnected));
        assert_eq!(q.recv_into(&mut buf), Ok(1));
        assert_eq!(q.recv_into(&mut buf), Err(RecvError::Disconnected));
        assert!(matches!(
            q.recv_ref_deadline(None),
            Err(RecvError::Disconnected)
        ));
    });
}

#[test]
fn attach_validates_kind_tag_and_config() {
    let mut b = mem(4, 100);
    let len = b.len() * 128;
    let base = bytes(&mut b).as_mut_ptr();
    // SAFETY: as `region` below.
    let q = MsgQueue::create_tagged(
        unsafe { Region::from_raw_parts(NonNull::new(base).unwrap(), len) },
        4,
        100,
        77,
    )
    .unwrap();
    q.try_send(b"x").unwrap();
    // SAFETY: `b` outlives every view below; the views are only read
    // through the queue's code (shared atomics) and raw writes below that
    // stand for another process.
    let region = || unsafe { Region::from_raw_parts(NonNull::new(base).unwrap(), len) };
    assert!(matches!(
        MsgQueue::attach(region()),
        Err(AttachError::TypeMismatch { .. })
    ));
    let a = MsgQueue::attach_tagged(region(), 77).unwrap();
    assert_eq!((a.capacity(), a.max_message()), (4, 100));
    let mut out = [0u8; 100];
    assert_eq!(a.try_recv_into(&mut out), Ok(1));
    // Truncated: the data area does not fit.
    // SAFETY: a prefix of the same memory.
    let short = unsafe { Region::from_raw_parts(NonNull::new(base).unwrap(), 900) };
    assert!(matches!(
        MsgQueue::attach_tagged(short, 77),
        Err(AttachError::TooSmall { .. })
    ));
    // A corrupt max_message or stride is refused.
    let config = &q.parts.body.config;
    config.max_message.store(MAX_MESSAGE + 1, Ordering::Relaxed);
    assert!(matches!(
        MsgQueue::attach_tagged(region(), 77),
        Err(AttachError::CorruptCapacity { .. })
    ));
    config.max_message.store(100, Ordering::Relaxed);
    config.stride.store(8, Ordering::Relaxed);
    assert!(matches!(
        MsgQueue::attach_tagged(region(), 77),
        Err(AttachError::CorruptCapacity { .. })
    ));
}

/// A message whose recorded length exceeds max_message is reported (and
/// consumed), never read out of bounds.
#[test]
fn a_corrupt_length_is_a_typed_error() {
    with_queue(2, 16, |q| {
        q.try_send(b"first").unwrap();
        q.try_send(b"second").unwrap();
        // SAFETY: single-threaded test; stands for a scribbling process.
        q.slot(0).len.with_mut(|p| unsafe { *p = u64::MAX });
        let mut out = [0u8; 16];
        assert_eq!(
            q.try_recv_into(&mut out),
            Err(RecvError::BadLength {
                len: u64::MAX,
                max: 16
            })
        );
        assert_eq!(q.try_recv_into(&mut out), Ok(6));
        q.try_send(b"third").unwrap();
        // SAFETY: as above.
        q.slot(2).len.with_mut(|p| unsafe { *p = 17 });
        assert!(matches!(
            q.try_recv_ref(),
            Err(RecvError::BadLength { len: 17, max: 16 })
        ));
    });
}

/// Garbage in every shared word: calls return values or typed errors,
/// never panic, never touch memory outside the region (run under Miri or
/// ASan for the last part; the fuzz target `msgqueue_read` does this at
/// scale).
#[test]
fn garbage_memory_never_panics() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..300 {
        let cap = 1 + next() % 5;
        let max = next() % 40;
        let mut b = mem(cap, max);
        let q = MsgQueue::create(Region::from_mut_slice(bytes(&mut b)), cap, max).unwrap();
        for i in 0..next() % 6 {
            let _ = q.try_send(&message(i, max as usize));
        }
        // Scribble over the indices and slots (not the header or config).
        let words = q.parts.count * 4;
        for _ in 0..1 + next() % 8 {
            let v = match next() % 4 {
                0 => next(),
                1 => next() % 16,
                2 => busy(full_stamp(next() % 8), next()),
                _ => next() | 1 << 63,
            };
            let w = next() as usize % (words + 2);
            if w < words {
                let slot = q.slot(w as u64 / 4);
                match w % 4 {
                    0 => slot.seq.store(v, Ordering::Relaxed),
                    1 => slot.owner.store(v, Ordering::Relaxed),
                    // SAFETY: single-threaded; stands for another process.
                    _ => slot.len.with_mut(|p| unsafe { *p = v }),
                }
            } else if w == words {
                q.parts.body.ring.tail.pos.store(v, Ordering::Relaxed);
            } else {
                q.parts.body.ring.head.pos.store(v, Ordering::Relaxed);
            }
        }
        let mut out = vec![0u8; max as usize];
        for i in 0..12 {
            match next() % 4 {
                0 => {
                    if let Ok(n) = q.try_recv_into(&mut out) {
                        assert!(n <= max as usize, "round {round}");
                    }
                }
                1 => {
                    if let Ok(r) = q.try_recv_ref() {
                        assert!(r.len() <= max as usize);
                    }
                }
                2 => {
                    let _ = q.try_send(&message(i, max as usize));
                }
                _ => {
                    let _ = q.recv_into_timeout(&mut out, Duration::from_micros(50));
                }
            }
        }
        let _ = (q.len(), q.is_empty(), q.is_full());
    }
}

/// A producer that took a slot and vanished (its process died: here a
/// slot made to look owned by a pid that runs nothing) is stepped over by
/// a blocked receiver, which then gets the next message.
#[test]
fn a_dead_writers_slot_is_stepped_over() {
    with_queue(4, 8, |q| {
        let w = q.try_send_ref().unwrap();
        let pos = w.position();
        core::mem::forget(w);
        q.try_send(b"next").unwrap();
        let slot = q.slot(pos);
        // A pid above every real one: never alive.
        let dead = busy(
            free_word(q.capacity(), pos),
            (1 << crate::identity::PID_BITS) - 1,
        );
        slot.seq.store(dead, Ordering::Relaxed);
        slot.owner.store(0, Ordering::Relaxed);
        let mut out = [0u8; 8];
        assert_eq!(q.try_recv_into(&mut out), Err(RecvError::Empty));
        assert_eq!(
            q.recv_into_timeout(&mut out, Duration::from_secs(30)),
            Ok(4)
        );
        assert_eq!(&out[..4], b"next");
    });
}

#[test]
fn threads_exactly_once_with_mixed_sizes() {
    const PER: u64 = 5000;
    const MAX: usize = 300;
    with_queue(8, MAX as u64, |q| {
        let q = q.with_spin(Spin::NONE);
        let (sum, count) = std::thread::scope(|s| {
            let consumers: Vec<_> = (0..3)
                .map(|c| {
                    s.spawn(move || {
                        let mut out = vec![0u8; MAX];
                        let (mut sum, mut count) = (0u64, 0u64);
                        loop {
                            // Alternate copying and in-place receives.
                            let got = if c % 2 == 0 {
                                q.recv_into(&mut out).map(|n| out[..n].to_vec())
                            } else {
                                q.recv_ref_deadline(None).map(|r| r.to_vec())
                            };
                            let Ok(m) = got else { break };
                            let i = u64::from_le_bytes(m[..8].try_into().unwrap());
                            let mut want = message(i, MAX - 8);
                            want.splice(0..0, i.to_le_bytes());
                            assert_eq!(m, want);
                            sum += i;
                            count += 1;
                        }
                        (sum, count)
                    })
                })
                .collect();
            let producers: Vec<_> = (0..3u64)
                .map(|p| {
                    s.spawn(move || {
                        for i in p * PER..(p + 1) * PER {
                            let mut m = i.to_le_bytes().to_vec();
                            m.extend(message(i, MAX - 8));
                            if i % 3 == 0 {
                                let mut w = q.send_ref_deadline(None).unwrap();
                                w[..m.len()].copy_from_slice(&m);
                                w.commit(m.len()).unwrap();
                            } else {
                                q.send(&m).unwrap();
                            }
                        }
                    })
                })
                .collect();
            producers.into_iter().for_each(|h| h.join().unwrap());
            q.close();
            consumers
                .into_iter()
                .map(|h| h.join().unwrap())
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        });
        assert_eq!(count, 3 * PER);
        assert_eq!(sum, (3 * PER - 1) * 3 * PER / 2);
    });
}

/// A producer that took the slot at `tail` and was killed before it
/// recorded its identity (or moved `tail` on): the next send walks past
/// the held slot; a blocking receive steps over it once its pid is found
/// dead, a non-blocking one does not.
#[test]
fn a_writer_killed_before_its_record_is_walked_past() {
    with_queue(4, 8, |q| {
        // A pid above every real one: never alive.
        let dead = (1 << crate::identity::PID_BITS) - 1;
        q.slot(0).seq.store(busy(0, dead), Ordering::Relaxed);
        q.try_send(b"next").unwrap();
        assert_eq!(q.parts.body.ring.tail.pos.load(Ordering::Relaxed), 2);
        let mut out = [0u8; 8];
        assert_eq!(q.try_recv_into(&mut out), Err(RecvError::Empty));
        assert_eq!(
            q.recv_into_timeout(&mut out, Duration::from_secs(30)),
            Ok(4)
        );
        assert_eq!(&out[..4], b"next");
    });
}

/// `tail` and `head` are hints moved on by plain stores, so a thread that
/// stalls between its load and its store can move one back, by laps:
/// calls walk (and jump) forward from there instead of calling the queue
/// corrupt.
#[test]
fn hints_stale_by_laps_are_walked_forward() {
    with_queue(4, 8, |q| {
        let b = &q.parts.body.ring;
        let mut out = [0u8; 8];
        for i in 0..20u8 {
            q.try_send(&[i]).unwrap();
            assert_eq!(q.try_recv_into(&mut out), Ok(1));
            assert_eq!(out[0], i);
        }
        // Five laps back: slot 0 says "free for 20".
        b.head.pos.store(0, Ordering::Relaxed);
        assert_eq!(q.try_recv_into(&mut out), Err(RecvError::Empty));
        assert_eq!(b.head.pos.load(Ordering::Relaxed), 20);
        b.tail.pos.store(1, Ordering::Relaxed);
        q.try_send(&[20]).unwrap();
        assert_eq!(b.tail.pos.load(Ordering::Relaxed), 21);
        b.tail.pos.store(2, Ordering::Relaxed);
        q.try_send(&[21]).unwrap();
        assert_eq!(b.tail.pos.load(Ordering::Relaxed), 22);
        assert!(q.len() <= 4);
        b.head.pos.store(1, Ordering::Relaxed);
        assert_eq!(q.try_recv_into(&mut out), Ok(1));
        assert_eq!(out[0], 20);
        b.head.pos.store(2, Ordering::Relaxed);
        assert_eq!(q.try_recv_into(&mut out), Ok(1));
        assert_eq!(out[0], 21);
        assert_eq!(q.try_recv_into(&mut out), Err(RecvError::Empty));
        assert_eq!(b.head.pos.load(Ordering::Relaxed), 22);
    });
}

/// A `seq` word in no state a slot can be in (skipped and busy, skipped
/// with an even stamp, an owner without the busy bit) is reported, by
/// sends and receives alike.
#[test]
fn impossible_slot_words_are_corrupt() {
    for word in [SKIPPED | BUSY | 5, SKIPPED | 4, 1 << 40 | 4] {
        with_queue(4, 8, |q| {
            q.slot(0).seq.store(word, Ordering::Relaxed);
            assert_eq!(q.try_send(b"x"), Err(SendError::Corrupt));
            let mut out = [0u8; 8];
            assert_eq!(q.try_recv_into(&mut out), Err(RecvError::Corrupt));
        });
    }
}

#[test]
fn errors_display_lowercase() {
    for e in [
        std::format!("{}", SendError::TooLarge { len: 9, max: 8 }),
        std::format!("{}", SendError::Full),
        std::format!("{}", RecvError::BufferTooSmall { needed: 3 }),
        std::format!("{}", RecvError::BadLength { len: 9, max: 8 }),
        std::format!("{}", RecvError::Disconnected),
    ] {
        assert!(e.chars().next().unwrap().is_lowercase(), "{e}");
        assert!(!e.ends_with('.'));
    }
}
