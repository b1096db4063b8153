//! multiproc-core structures between real processes: an anonymous
//! `MAP_SHARED` mapping, `fork`, and `kill -9` at the worst moment.

use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc_core::bytering::{ByteRing, RecvError};
use multiproc_core::mpmc::MpmcRing;
use multiproc_core::mutex::{Mutex, PoisonCause};
use multiproc_core::spsc::{PopError, SpscRing};
use multiproc_tests::Cells;
use multiproc_tests::{checksum, fork, Exit, SharedMap};

const WATCHDOG: Duration = Duration::from_secs(60);

#[test]
fn spsc_streams_in_order_between_processes() {
    const N: u64 = 2_000_000;
    let map = SharedMap::new(SpscRing::<u64>::memory_size(1024).unwrap());
    let cells = Cells::new();
    let ring = SpscRing::<u64>::create(map.region(), 1024).unwrap();

    let child = fork(|| {
        let ring = SpscRing::<u64>::attach(map.region()).unwrap();
        let mut rx = ring.consumer().unwrap();
        let mut sum = 0;
        for i in 0..N {
            let v = rx.pop().unwrap();
            if v != i {
                return 2;
            }
            sum = checksum(sum, v);
        }
        cells.get(0).store(sum, Ordering::Release);
        // The producer is gone by now or soon: the ring reports it.
        match rx.pop_timeout(Duration::from_secs(20)) {
            Err(PopError::Disconnected) => 0,
            _ => 3,
        }
    });
    let mut tx = ring.producer().unwrap();
    let mut expect = 0;
    for i in 0..N {
        tx.push(i).unwrap();
        expect = checksum(expect, i);
    }
    drop(tx);
    child.join_ok(WATCHDOG);
    assert_eq!(cells.get(0).load(Ordering::Acquire), expect);
}

#[test]
fn spsc_producer_killed_mid_stream_consumer_sees_all_then_disconnected() {
    let map = SharedMap::new(SpscRing::<u64>::memory_size(64).unwrap());
    let cells = Cells::new();
    let ring = SpscRing::<u64>::create(map.region(), 64).unwrap();
    let mut child = fork(|| {
        let ring = SpscRing::<u64>::attach(map.region()).unwrap();
        let mut tx = ring.producer().unwrap();
        let mut i = 0u64;
        loop {
            tx.push(i).unwrap();
            i += 1;
            // Publish how many completed pushes there are.
            cells.get(0).store(i, Ordering::Release);
        }
    });
    let mut rx = ring.consumer().unwrap();
    let mut next = 0u64;
    // Receive a while, then kill the producer in the middle of its stream.
    while next < 100_000 {
        assert_eq!(rx.pop_timeout(WATCHDOG).unwrap(), next);
        next += 1;
    }
    assert_eq!(child.kill9(), Exit::Signal(libc::SIGKILL));
    let completed = cells.get(0).load(Ordering::Acquire);
    loop {
        match rx.pop_timeout(WATCHDOG) {
            Ok(v) => {
                assert_eq!(v, next, "lost or duplicated message");
                next += 1;
            }
            Err(PopError::Disconnected) => break,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    // Every push the child completed was received (one more may have been
    // published just before the counter was bumped).
    assert!(
        next == completed || next == completed + 1,
        "{next} vs {completed}"
    );
}

#[test]
fn mpmc_two_producers_two_consumers_across_processes() {
    const PER: u64 = 300_000;
    let map = SharedMap::new(MpmcRing::<u64>::memory_size(256).unwrap());
    let cells = Cells::new();
    MpmcRing::<u64>::create(map.region(), 256).unwrap();
    let mut children = Vec::new();
    for p in 0..2u64 {
        let map = &map;
        children.push(fork(move || {
            let ring = MpmcRing::<u64>::attach(map.region()).unwrap();
            for i in 0..PER {
                ring.push(p * PER + i + 1).unwrap();
            }
            0
        }));
    }
    for c in 0..2usize {
        let (map, cells) = (&map, &cells);
        children.push(fork(move || {
            let ring = MpmcRing::<u64>::attach(map.region()).unwrap();
            let (mut sum, mut n) = (0u64, 0u64);
            loop {
                match ring.pop_timeout(Duration::from_secs(20)) {
                    Ok(0) => break, // poison pill from the parent
                    Ok(v) => {
                        sum = sum.wrapping_add(v);
                        n += 1;
                    }
                    Err(_) => return 4,
                }
            }
            cells.get(2 * c).store(sum, Ordering::Relaxed);
            cells.get(2 * c + 1).store(n, Ordering::Release);
            0
        }));
    }
    let consumers = children.split_off(2);
    for p in children {
        p.join_ok(WATCHDOG);
    }
    let ring = MpmcRing::<u64>::attach(map.region()).unwrap();
    ring.push(0).unwrap();
    ring.push(0).unwrap();
    for c in consumers {
        c.join_ok(WATCHDOG);
    }
    let total = 2 * PER;
    let sum: u64 = (0..2)
        .map(|c| cells.get(2 * c).load(Ordering::Relaxed))
        .sum();
    let n: u64 = (0..2)
        .map(|c| cells.get(2 * c + 1).load(Ordering::Relaxed))
        .sum();
    assert_eq!(n, total, "lost or duplicated messages");
    assert_eq!(sum, total * (total + 1) / 2);
}

#[test]
fn mutex_counts_exactly_across_processes() {
    const PER: u64 = 100_000;
    let map = SharedMap::new(Mutex::<u64>::memory_size().unwrap());
    Mutex::<u64>::create(map.region(), 0).unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| {
            let map = &map;
            fork(move || {
                let m = Mutex::<u64>::attach(map.region()).unwrap();
                for _ in 0..PER {
                    *m.lock().unwrap() += 1;
                }
                0
            })
        })
        .collect();
    for k in kids {
        k.join_ok(WATCHDOG);
    }
    let m = Mutex::<u64>::attach(map.region()).unwrap();
    assert_eq!(*m.lock().unwrap(), 3 * PER);
}

/// The holder is killed with SIGKILL while holding the lock. The next
/// locker gets the poison (owner died) with the guard, recovers, and the
/// lock works again afterwards.
fn killed_holder(reap_before_lock: bool) {
    let map = SharedMap::new(Mutex::<u64>::memory_size().unwrap());
    let cells = Cells::new();
    let m = Mutex::<u64>::create(map.region(), 41).unwrap();
    let mut child = fork(|| {
        let m = Mutex::<u64>::attach(map.region()).unwrap();
        let mut g = m.lock().unwrap();
        *g = 42;
        cells.get(0).store(1, Ordering::Release);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    cells.wait_for(0, 1);
    assert!(matches!(
        m.try_lock(),
        Err(multiproc_core::mutex::TryLockError::WouldBlock)
    ));
    let pid = child.pid();
    if reap_before_lock {
        assert_eq!(child.kill9(), Exit::Signal(libc::SIGKILL));
    } else {
        // Leave it a zombie: dead, but its pid still exists until reaped.
        child.signal(libc::SIGKILL);
    }
    let err = m
        .lock_timeout(Duration::from_secs(30))
        .expect_err("a dead owner's lock must come back poisoned");
    let poisoned = match err {
        multiproc_core::mutex::LockTimeoutError::Poisoned(p) => p,
        other => panic!("expected poison, got {other:?}"),
    };
    assert_eq!(poisoned.cause(), PoisonCause::OwnerDied { pid });
    let mut g = poisoned.into_inner();
    assert_eq!(*g, 42, "the dead owner's write is visible");
    *g = 43;
    drop(g);
    assert!(m.is_poisoned());
    m.clear_poison();
    assert_eq!(*m.lock().unwrap(), 43);
    drop(child);
}

#[test]
fn mutex_holder_killed_reaped_next_locker_recovers() {
    killed_holder(true);
}

#[test]
fn mutex_holder_killed_zombie_next_locker_recovers() {
    killed_holder(false);
}

#[test]
fn bytering_frames_between_processes() {
    const N: u32 = 20_000;
    let cap = 1 << 16;
    let map = SharedMap::new(ByteRing::memory_size(cap).unwrap());
    let ring = ByteRing::create(map.region(), cap, 4096).unwrap();
    let child = fork(|| {
        let ring = ByteRing::attach(map.region()).unwrap();
        let mut tx = ring.sender().unwrap();
        let mut buf = vec![0u8; 4096];
        for i in 0..N {
            let len = (i as usize * 7919) % 4097;
            for (j, b) in buf[..len].iter_mut().enumerate() {
                *b = (i as usize + j) as u8;
            }
            tx.send(&buf[..len]).unwrap();
        }
        0
    });
    let mut rx = ring.receiver().unwrap();
    let mut buf = vec![0u8; 4096];
    for i in 0..N {
        let len = rx.recv_into_timeout(&mut buf, WATCHDOG).unwrap();
        assert_eq!(len, (i as usize * 7919) % 4097);
        for (j, b) in buf[..len].iter().enumerate() {
            assert_eq!(*b, (i as usize + j) as u8);
        }
    }
    child.join_ok(WATCHDOG);
    assert_eq!(
        rx.recv_into_timeout(&mut buf, WATCHDOG),
        Err(RecvError::Disconnected)
    );
}

#[test]
fn attach_in_child_rejects_wrong_type() {
    let map = SharedMap::new(SpscRing::<u64>::memory_size(8).unwrap());
    SpscRing::<u64>::create(map.region(), 8).unwrap();
    let child = fork(|| match SpscRing::<u32>::attach(map.region()) {
        Err(multiproc_core::region::AttachError::TypeMismatch { .. }) => 0,
        _ => 1,
    });
    child.join_ok(WATCHDOG);
}
