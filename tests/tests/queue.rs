//! `multiproc::queue` and `multiproc::spsc` between real processes: every
//! operation, disconnection (clean and by `kill -9`), hand-over by fork and
//! by token to a spawned process, and a stress test with checksums.
//!
//! A custom harness (`harness = false`): the spawn test re-runs this
//! binary, whose `main` registers the entry points and calls
//! `multiproc::init()` first. Every test runs under a watchdog.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc::queue::{
    self, JoinableQueue, Queue, QueueError, RecvError, RecvTimeoutError, SendError, SendSliceError,
    SendTimeoutError, SimpleQueue, TryRecvError, TrySendError,
};
use multiproc::raw::wait::Spin;
use multiproc::{spsc, Process, StartMethod};
use multiproc_tests::checksum;
use multiproc_tests::process_support::{run_tests, Test};
use multiproc_tests::Cells;

const WATCHDOG: Duration = Duration::from_secs(60);
/// Generous bound for "noticed a death": the design says ~25 ms.
const DEATH_BOUND: Duration = Duration::from_secs(5);

fn join_ok(p: &Process) {
    let st = p.join_timeout(WATCHDOG).expect("join (child hung?)");
    assert!(st.success(), "child failed: {st:?}");
}

// ---------------------------------------------------------------------------
// In one process: every operation and error.

fn operations_and_errors() {
    assert!(matches!(
        queue::channel::<u64>(0),
        Err(QueueError::InvalidCapacity { capacity: 0 })
    ));
    assert!(spsc::channel::<u64>(0).is_err());
    assert!(SimpleQueue::<u8>::with_capacity(0).is_err());

    let (tx, rx) = queue::channel::<u64>(2).unwrap();
    assert_eq!(tx.capacity(), 2);
    assert!(rx.is_empty() && !tx.is_full());
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(30)),
        Err(RecvTimeoutError::Timeout)
    );
    tx.send(1).unwrap();
    tx.try_send(2).unwrap();
    assert!(tx.is_full() && rx.len() == 2);
    assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
    assert!(matches!(
        tx.send_timeout(3, Duration::from_millis(30)),
        Err(SendTimeoutError::Timeout(3))
    ));
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.recv_with(|v| *v * 10), Ok(20));
    tx.send_with(|slot| *slot = 5).unwrap();
    assert_eq!(rx.try_recv(), Ok(5));
    // Batches.
    let (tx, rx) = queue::channel::<u64>(4).unwrap();
    tx.send_slice(&[7, 8, 9]).unwrap();
    let mut out = [0u64; 8];
    assert_eq!(rx.recv_slice(&mut out), Ok(3));
    assert_eq!(&out[..3], &[7, 8, 9]);
    // Dropping the last sender: drain, then Disconnected.
    tx.send(1).unwrap();
    let tx2 = tx.clone();
    drop(tx);
    tx2.send(2).unwrap();
    drop(tx2);
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    assert_eq!(rx.recv_with(|v| *v), Err(RecvError::Disconnected));
    assert!(rx.is_disconnected());
    // Dropping the last receiver: senders fail at once.
    let (tx, rx) = queue::channel::<u64>(4).unwrap();
    let rx2 = rx.clone();
    drop(rx);
    tx.send(1).unwrap();
    drop(rx2);
    assert!(matches!(tx.try_send(2), Err(TrySendError::Disconnected(2))));
    assert_eq!(tx.send(3), Err(SendError::Disconnected(3)));
    assert_eq!(tx.send_with(|v| *v = 1), Err(SendError::Disconnected(())));
    assert_eq!(
        tx.send_slice(&[1, 2]),
        Err(SendSliceError {
            sent: 0,
            error: SendError::Disconnected(())
        })
    );
    // close() disconnects both sides.
    let (tx, rx) = queue::channel::<u64>(4).unwrap();
    tx.send(4).unwrap();
    rx.close();
    assert!(tx.is_disconnected());
    assert!(tx.send(5).is_err());
    assert_eq!(rx.recv(), Ok(4));
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    // Tokens need a name; a wrong type is refused.
    let (tx, _rx) = queue::channel::<u64>(4).unwrap();
    assert!(matches!(tx.to_token(), Err(QueueError::Anonymous)));
    let (tx, rx) = Queue::<u64>::new(4).unique_name().channel().unwrap();
    let tok = tx.to_token().unwrap();
    assert!(matches!(
        queue::Sender::<u32>::from_token(&tok),
        Err(QueueError::BadToken { .. })
    ));
    assert!(matches!(
        queue::Sender::<i64>::from_token(&tok),
        Err(QueueError::BadToken { .. })
    ));
    assert!(matches!(
        queue::Receiver::<u64>::from_token(&tok),
        Err(QueueError::BadToken { .. })
    ));
    assert!(queue::Sender::<u64>::from_token(b"garbage").is_err());
    let tx3 = queue::Sender::<u64>::from_token(&tok).unwrap();
    drop(tx);
    tx3.send(9).unwrap();
    drop(tx3);
    assert_eq!(rx.recv(), Ok(9));
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    // SPSC: the same surface.
    let (mut p, mut c) = spsc::channel::<u32>(2).unwrap();
    assert_eq!(c.try_recv(), Err(TryRecvError::Empty));
    p.send(1).unwrap();
    p.send_with(|v| *v = 2).unwrap();
    assert!(matches!(p.try_send(3), Err(TrySendError::Full(3))));
    assert!(matches!(
        p.send_timeout(3, Duration::from_millis(30)),
        Err(SendTimeoutError::Timeout(3))
    ));
    assert_eq!(c.recv(), Ok(1));
    assert_eq!(c.recv_with(|v| *v), Ok(2));
    assert_eq!(
        c.recv_timeout(Duration::from_millis(30)),
        Err(RecvTimeoutError::Timeout)
    );
    p.send_slice(&[5, 6]).unwrap();
    let mut out = [0u32; 4];
    assert_eq!(c.recv_slice(&mut out), Ok(2));
    p.send(7).unwrap();
    drop(p);
    assert_eq!(c.recv(), Ok(7));
    assert_eq!(c.recv(), Err(RecvError::Disconnected));
    let (mut p, c) = spsc::channel::<u32>(1).unwrap();
    drop(c);
    p.try_send(1).unwrap();
    assert_eq!(p.send(2), Err(SendError::Disconnected(2)));
    // SimpleQueue / JoinableQueue.
    let q = SimpleQueue::<u16>::new().unwrap();
    assert!(q.empty());
    q.put(3).unwrap();
    assert_eq!(q.get(), Ok(3));
    q.close();
    assert_eq!(q.get(), Err(RecvError::Disconnected));
    let j = JoinableQueue::<u16>::with_capacity(4).unwrap();
    assert!(j.task_done().is_err());
    j.put(1).unwrap();
    j.put(2).unwrap();
    assert_eq!(j.unfinished(), 2);
    assert_eq!(
        j.join_timeout(Duration::from_millis(20)),
        Err(queue::JoinError::Timeout)
    );
    assert_eq!(j.get(), Ok(1));
    j.task_done().unwrap();
    assert_eq!(j.get(), Ok(2));
    j.task_done().unwrap();
    assert!(j.task_done().is_err());
    assert_eq!(j.join_timeout(Duration::ZERO), Ok(()));
    j.join().unwrap();
}

/// A queue whose ring memory was overwritten reports `Corrupt`, not
/// `Disconnected`: a broken segment is told apart from a closed queue.
fn corrupt_segment_is_not_disconnected() {
    const MARK: u64 = 0x5eed_c0de_1234_5678;
    let name = format!("/mp-queue-corrupt-{}", std::process::id());
    let (tx, rx) = Queue::<u64>::new(4).named(&name).channel().unwrap();
    tx.send(MARK).unwrap();
    assert_eq!(rx.recv(), Ok(MARK));
    // Slot 0 still holds MARK (a receive copies out, it does not clear):
    // find it. A slot is [seq, owner, value] (core pins that layout), so
    // slot 1's `seq`, where head and tail now point, follows MARK.
    let mut shm = multiproc::shm::SharedMemory::open(&name).unwrap();
    // SAFETY: nobody else maps the segment, and this process's handles do
    // not run while the slice lives.
    let mem = unsafe { shm.as_mut_slice() };
    let at = (0..mem.len() - 16)
        .step_by(8)
        .filter(|&i| mem[i..i + 8] == MARK.to_ne_bytes())
        .collect::<Vec<_>>();
    assert_eq!(at.len(), 1, "MARK found once");
    // A sequence number in no state a slot can be in (skipped and busy at
    // once), which no run of the ring's code can leave.
    let impossible: u64 = 0b11 << 62 | 3;
    mem[at[0] + 8..at[0] + 16].copy_from_slice(&impossible.to_ne_bytes());
    assert!(matches!(tx.try_send(1), Err(TrySendError::Corrupt(1))));
    assert_eq!(tx.send(2), Err(SendError::Corrupt(2)));
    assert!(matches!(
        tx.send_timeout(3, Duration::ZERO),
        Err(SendTimeoutError::Corrupt(3))
    ));
    assert_eq!(
        tx.send_slice(&[4, 5]),
        Err(SendSliceError {
            sent: 0,
            error: SendError::Corrupt(())
        })
    );
    assert_eq!(rx.try_recv(), Err(TryRecvError::Corrupt));
    assert_eq!(rx.recv(), Err(RecvError::Corrupt));
    assert_eq!(
        rx.recv_timeout(Duration::ZERO),
        Err(RecvTimeoutError::Corrupt)
    );
    assert!(!tx.is_disconnected() && !rx.is_disconnected());
    assert!(rx.recv().unwrap_err().to_string().contains("corrupt"));
}

/// The SPSC channel's consumer finds an impossible `tail` and its producer
/// an impossible `head` (more values in flight than the capacity): each
/// reports `Corrupt`, and neither end reads as disconnected.
fn spsc_corrupt_indices_are_not_disconnected() {
    const COUNT: u64 = 37;
    let name = format!("/mp-spsc-corrupt-{}", std::process::id());
    let (mut tx, mut rx) = spsc::Spsc::<u64>::new(4).named(&name).channel().unwrap();
    for i in 0..COUNT {
        tx.send(i).unwrap();
        assert_eq!(rx.recv(), Ok(i));
    }
    let mut shm = multiproc::shm::SharedMemory::open(&name).unwrap();
    let word = |mem: &[u8], at: usize| u64::from_ne_bytes(mem[at..at + 8].try_into().unwrap());
    // `tail` and `head` (both COUNT now) sit on lines of their own, 128
    // bytes apart (core pins that layout).
    let tail_at = {
        // SAFETY: nobody else maps the segment, and this process's handles
        // do not run while the slice lives (each use below re-borrows it).
        let mem = unsafe { shm.as_mut_slice() };
        let at = (0..mem.len() - 136)
            .step_by(8)
            .filter(|&i| word(mem, i) == COUNT && word(mem, i + 128) == COUNT)
            .collect::<Vec<_>>();
        assert_eq!(at.len(), 1, "tail and head found once: {at:?}");
        at[0]
    };
    let head_at = tail_at + 128;
    let set = |shm: &mut multiproc::shm::SharedMemory, at: usize, v: u64| {
        // SAFETY: as above.
        let mem = unsafe { shm.as_mut_slice() };
        mem[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    };
    // A tail 1000 values ahead of head, in a ring of 4.
    set(&mut shm, tail_at, COUNT + 1000);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Corrupt));
    assert_eq!(rx.recv(), Err(RecvError::Corrupt));
    assert_eq!(
        rx.recv_timeout(Duration::ZERO),
        Err(RecvTimeoutError::Corrupt)
    );
    set(&mut shm, tail_at, COUNT);
    // Fill the ring, so that the producer must look at `head` again, then
    // put `head` past `tail`.
    for i in 0..4 {
        tx.send(i).unwrap();
    }
    set(&mut shm, head_at, COUNT + 1000);
    assert!(matches!(tx.try_send(9), Err(TrySendError::Corrupt(9))));
    assert_eq!(tx.send(10), Err(SendError::Corrupt(10)));
    assert!(matches!(
        tx.send_timeout(11, Duration::ZERO),
        Err(SendTimeoutError::Corrupt(11))
    ));
    assert!(!tx.is_disconnected() && !rx.is_disconnected());
}

fn errors_format_without_debug_bound() {
    #[derive(Clone, Copy)]
    struct NoDebug;
    assert_eq!(format!("{:?}", TrySendError::Full(NoDebug)), "Full(..)");
    assert_eq!(
        format!("{:?}", SendError::Disconnected(NoDebug)),
        "Disconnected(..)"
    );
    assert_eq!(
        format!("{:?}", SendTimeoutError::Disconnected(NoDebug)),
        "Disconnected(..)"
    );
    for s in [
        TrySendError::Full(NoDebug).to_string(),
        SendError::Disconnected(NoDebug).to_string(),
        RecvError::Disconnected.to_string(),
        RecvError::Corrupt.to_string(),
        SendTimeoutError::Corrupt(NoDebug).to_string(),
        TryRecvError::Empty.to_string(),
        RecvTimeoutError::Timeout.to_string(),
        QueueError::Anonymous.to_string(),
    ] {
        assert!(
            s.chars().next().unwrap().is_lowercase() && !s.ends_with('.'),
            "{s}"
        );
    }
    let e: Box<dyn std::error::Error> = Box::new(TrySendError::Disconnected(1u8));
    assert!(e.to_string().contains("disconnected"));
}

// ---------------------------------------------------------------------------
// Across processes.

/// A forked producer sends N values and drops its sender; the parent gets
/// them all (in order, checksummed), then Disconnected.
fn fork_sender_then_disconnected() {
    const N: u64 = 100_000;
    let (tx, rx) = queue::channel::<u64>(64).unwrap();
    let child = Process::new(move || {
        for i in 0..N {
            match i % 3 {
                0 => tx.send(i).unwrap(),
                1 => tx.send_with(|s| *s = i).unwrap(),
                _ => tx.send_slice(&[i]).unwrap(),
            }
        }
    })
    .start()
    .unwrap();
    let (mut sum, mut next) = (0, 0u64);
    let mut buf = [0u64; 16];
    loop {
        let got: Vec<u64> = match next % 3 {
            0 => match rx.recv() {
                Ok(v) => vec![v],
                Err(RecvError::Disconnected) => break,
                Err(e @ RecvError::Corrupt) => panic!("{e}"),
            },
            1 => match rx.recv_with(|v| *v) {
                Ok(v) => vec![v],
                Err(RecvError::Disconnected) => break,
                Err(e @ RecvError::Corrupt) => panic!("{e}"),
            },
            _ => match rx.recv_slice(&mut buf) {
                Ok(n) => buf[..n].to_vec(),
                Err(RecvError::Disconnected) => break,
                Err(e @ RecvError::Corrupt) => panic!("{e}"),
            },
        };
        for v in got {
            assert_eq!(v, next, "lost, duplicated or reordered");
            sum = checksum(sum, v);
            next += 1;
        }
    }
    assert_eq!(next, N);
    assert_eq!(sum, (0..N).fold(0, checksum));
    join_ok(&child);
}

/// The consumer child drops its receiver and exits: the parent's blocked
/// send gets Disconnected, and the values it sent before were received.
fn fork_receiver_gone_sender_disconnected() {
    let cells: &'static Cells = Box::leak(Box::new(Cells::new()));
    let (tx, rx) = queue::channel::<u64>(4).unwrap();
    let cells_ref = cells;
    let child = Process::new(move || {
        for _ in 0..3 {
            let v = rx.recv().unwrap();
            cells_ref.get(0).fetch_add(v, Ordering::Release);
        }
    })
    .start()
    .unwrap();
    let mut n = 0;
    loop {
        match tx.send_timeout(1, WATCHDOG) {
            Ok(()) => n += 1,
            Err(SendTimeoutError::Disconnected(1)) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    join_ok(&child);
    assert_eq!(cells.get(0).load(Ordering::Acquire), 3);
    assert!((3..=3 + 4).contains(&n), "{n}");
}

/// A producer killed with SIGKILL mid-stream: the consumer receives every
/// completed send, then Disconnected, soon after the death.
fn producer_killed_mid_stream() {
    let cells: &'static Cells = Box::leak(Box::new(Cells::new()));
    let (tx, rx) = queue::channel::<u64>(256).unwrap();
    let cells_ref = cells;
    let child = Process::new::<_, ()>(move || {
        let mut i = 0u64;
        loop {
            tx.send(i).unwrap();
            i += 1;
            cells_ref.get(0).store(i, Ordering::Release);
        }
    })
    .start()
    .unwrap();
    let (mut next, mut sum) = (0u64, 0u64);
    while next < 200_000 {
        let v = rx.recv_timeout(WATCHDOG).unwrap();
        assert_eq!(v, next);
        sum = checksum(sum, v);
        next += 1;
    }
    child.kill().unwrap();
    child.join_timeout(WATCHDOG).unwrap();
    let died = Instant::now();
    let completed = cells.get(0).load(Ordering::Acquire);
    loop {
        match rx.recv_timeout(WATCHDOG) {
            Ok(v) => {
                assert_eq!(v, next, "lost or duplicated message");
                sum = checksum(sum, v);
                next += 1;
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(died.elapsed() < DEATH_BOUND, "death noticed late");
    // Every completed send arrived (one more may have been published just
    // before the counter moved).
    assert!(
        next == completed || next == completed + 1,
        "{next} vs {completed}"
    );
    assert_eq!(sum, (0..next).fold(0, checksum));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

/// The only consumer is killed while inside `recv_with`: that value is
/// lost, and a producer blocked on the full queue gets Disconnected instead
/// of waiting forever.
fn consumer_killed_inside_recv_with() {
    let cells: &'static Cells = Box::leak(Box::new(Cells::new()));
    let (tx, rx) = queue::channel::<u64>(4).unwrap();
    let cells_ref = cells;
    let child = Process::new(move || {
        let _ = rx.recv_with(|v| {
            cells_ref.get(0).store(v + 1, Ordering::Release);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    })
    .start()
    .unwrap();
    tx.send(41).unwrap();
    cells.wait_for(0, 42);
    child.kill().unwrap();
    let mut sent = 0;
    let t = Instant::now();
    let r = loop {
        match tx.send(7) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(r, SendError::Disconnected(7));
    assert!(t.elapsed() < DEATH_BOUND);
    assert!(sent <= 4);
    assert!(tx.is_disconnected());
}

/// A sender killed inside `send_with` (its slot taken, never published)
/// while another sender goes on: the receiver steps over the dead slot and
/// gets every message of the live sender, in order, then Disconnected.
fn sender_killed_inside_send_with_others_go_on() {
    sender_killed_holding_a_slot(false);
}

/// As above, the sender holding a `send_ref` guard (written, not committed)
/// when killed.
fn sender_killed_holding_send_ref_others_go_on() {
    sender_killed_holding_a_slot(true);
}

fn sender_killed_holding_a_slot(by_ref: bool) {
    const N: u64 = 20_000;
    let cells: &'static Cells = Box::leak(Box::new(Cells::new()));
    let (tx, rx) = queue::channel::<u64>(8).unwrap();
    let tx2 = tx.clone();
    let stuck = Process::new(move || {
        let hold = |v: &mut u64| {
            *v = u64::MAX;
            cells.get(0).store(1, Ordering::Release);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        };
        if by_ref {
            let mut guard = tx.send_ref().unwrap();
            hold(&mut guard);
        } else {
            tx.send_with(hold).unwrap();
        }
    })
    .start()
    .unwrap();
    cells.wait_for(0, 1);
    let live = Process::new(move || {
        for i in 0..N {
            tx2.send(i).unwrap();
        }
    })
    .start()
    .unwrap();
    // Let the live sender fill the ring behind the stuck slot.
    std::thread::sleep(Duration::from_millis(50));
    assert!(rx.try_recv().is_err(), "the stuck slot comes first");
    stuck.kill().unwrap();
    stuck.join_timeout(WATCHDOG).unwrap();
    let died = Instant::now();
    let (mut next, mut sum) = (0u64, 0u64);
    while next < N {
        let v = rx.recv_timeout(WATCHDOG).unwrap();
        if next == 0 {
            assert!(died.elapsed() < DEATH_BOUND, "dead slot stepped over late");
        }
        assert_eq!(v, next, "lost, duplicated or unfinished message");
        sum = checksum(sum, v);
        next += 1;
    }
    assert_eq!(sum, (0..N).fold(0, checksum));
    join_ok(&live);
    assert_eq!(
        rx.recv_timeout(WATCHDOG),
        Err(RecvTimeoutError::Disconnected)
    );
}

/// A receiver killed inside `recv_with` (its slot taken, never freed) while
/// another receiver goes on: a sender one lap later frees the dead slot,
/// and the live receiver gets every later message, in order.
fn receiver_killed_inside_recv_with_others_go_on() {
    receiver_killed_holding_a_slot(false);
}

/// As above, the receiver holding a `recv_ref` guard when killed.
fn receiver_killed_holding_recv_ref_others_go_on() {
    receiver_killed_holding_a_slot(true);
}

fn receiver_killed_holding_a_slot(by_ref: bool) {
    const N: u64 = 20_000;
    let cells: &'static Cells = Box::leak(Box::new(Cells::new()));
    let (tx, rx) = queue::channel::<u64>(4).unwrap();
    let rx2 = rx.clone();
    let stuck = Process::new(move || {
        let hold = |v: &u64| {
            cells.get(0).store(v + 1, Ordering::Release);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        };
        if by_ref {
            let guard = rx.recv_ref().unwrap();
            hold(&guard);
        } else {
            let _ = rx.recv_with(hold);
        }
    })
    .start()
    .unwrap();
    tx.send(N).unwrap();
    cells.wait_for(0, N + 1);
    stuck.kill().unwrap();
    stuck.join_timeout(WATCHDOG).unwrap();
    let live = Process::new(move || {
        let (mut next, mut sum) = (0u64, 0u64);
        loop {
            match rx2.recv_timeout(WATCHDOG) {
                Ok(v) => {
                    assert_eq!(v, next, "lost or duplicated message");
                    sum = checksum(sum, v);
                    next += 1;
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        cells.get(1).store(next, Ordering::Release);
        cells.get(2).store(sum, Ordering::Release);
    })
    .start()
    .unwrap();
    for i in 0..N {
        tx.send_timeout(i, WATCHDOG).unwrap();
    }
    drop(tx);
    join_ok(&live);
    assert_eq!(cells.get(1).load(Ordering::Acquire), N);
    assert_eq!(
        cells.get(2).load(Ordering::Acquire),
        (0..N).fold(0, checksum)
    );
}

/// A JoinableQueue worker killed before `task_done`: `join_timeout` reports
/// the task lost instead of hanging; the other items were done.
fn joinable_worker_killed_join_times_out() {
    let cells: &'static Cells = Box::leak(Box::new(Cells::new()));
    let q = JoinableQueue::<u64>::with_capacity(16).unwrap();
    for i in 0..4 {
        q.put(i).unwrap();
    }
    let worker = q.clone();
    let cells_ref = cells;
    let child = Process::new::<_, ()>(move || {
        for _ in 0..3 {
            worker.get().unwrap();
            worker.task_done().unwrap();
        }
        worker.get().unwrap();
        cells_ref.get(0).store(1, Ordering::Release);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
    .start()
    .unwrap();
    cells.wait_for(0, 1);
    child.kill().unwrap();
    child.join_timeout(WATCHDOG).unwrap();
    assert_eq!(q.unfinished(), 1);
    assert!(matches!(
        q.join_timeout(WATCHDOG),
        Err(queue::JoinError::TaskLost { tasks: 1, .. })
    ));
    q.task_done().unwrap(); // the parent acknowledges the lost task
    assert_eq!(q.join_timeout(WATCHDOG), Ok(()));
}

/// JoinableQueue across processes: two workers, the parent joins.
fn joinable_join_across_processes() {
    let cells: &'static Cells = Box::leak(Box::new(Cells::new()));
    let q = JoinableQueue::<u64>::with_capacity(8).unwrap();
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let q = q.clone();
            Process::new(move || {
                while let Ok(v) = q.get_timeout(Duration::from_millis(300)) {
                    cells.get(w).fetch_add(v, Ordering::Relaxed);
                    q.task_done().unwrap();
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    for i in 1..=1000 {
        q.put(i).unwrap();
    }
    q.join().unwrap();
    assert_eq!(
        cells.get(0).load(Ordering::Relaxed) + cells.get(1).load(Ordering::Relaxed),
        1000 * 1001 / 2
    );
    for w in &workers {
        join_ok(w);
    }
}

/// 2 producer and 2 consumer processes exchange 2 million messages; every
/// one arrives once (count and sum per consumer, per-producer order).
fn stress_two_producers_two_consumers() {
    const PER: u64 = 1_000_000;
    let cells: &'static Cells = Box::leak(Box::new(Cells::new()));
    let (tx, rx) = queue::channel::<[u64; 1]>(1024).unwrap();
    let mut kids = Vec::new();
    for p in 0..2u64 {
        let tx = tx.clone();
        kids.push(
            Process::new(move || {
                let mut batch = [[0u64; 1]; 32];
                let mut i = 0;
                while i < PER {
                    if i % 64 == 0 {
                        for (k, b) in batch.iter_mut().enumerate() {
                            *b = [(p << 32) | (i + k as u64)];
                        }
                        tx.send_slice(&batch).unwrap();
                        i += 32;
                    } else {
                        tx.send([(p << 32) | i]).unwrap();
                        i += 1;
                    }
                }
            })
            .start()
            .unwrap(),
        );
    }
    drop(tx);
    for c in 0..2usize {
        let rx = rx.clone();
        kids.push(
            Process::new(move || {
                let (mut n, mut sum) = (0u64, 0u64);
                let mut last = [None::<u64>; 2];
                let mut buf = [[0u64; 1]; 32];
                while let Ok(k) = rx.recv_slice(&mut buf) {
                    for &[v] in &buf[..k] {
                        let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                        assert!(last[p].is_none_or(|l| l < i), "out of order");
                        last[p] = Some(i);
                        n += 1;
                        sum = sum.wrapping_add(v);
                    }
                }
                cells.get(2 * c).store(n, Ordering::Relaxed);
                cells.get(2 * c + 1).store(sum, Ordering::Release);
            })
            .start()
            .unwrap(),
        );
    }
    drop(rx);
    for k in &kids {
        join_ok(k);
    }
    let n = cells.get(0).load(Ordering::Acquire) + cells.get(2).load(Ordering::Acquire);
    let sum = cells
        .get(1)
        .load(Ordering::Acquire)
        .wrapping_add(cells.get(3).load(Ordering::Acquire));
    let want = (0..2u64)
        .flat_map(|p| (0..PER).map(move |i| (p << 32) | i))
        .fold(0u64, u64::wrapping_add);
    assert_eq!(n, 2 * PER);
    assert_eq!(sum, want);
}

/// SPSC across a fork, then a killed producer.
fn spsc_across_fork_and_killed_producer() {
    const N: u64 = 200_000;
    let (mut tx, mut rx) = spsc::channel::<u64>(128).unwrap();
    let child = Process::new::<_, ()>(move || {
        for i in 0..N {
            tx.send(i).unwrap();
        }
    })
    .start()
    .unwrap();
    for i in 0..N {
        assert_eq!(rx.recv(), Ok(i));
    }
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    join_ok(&child);

    let cells: &'static Cells = Box::leak(Box::new(Cells::new()));
    let (mut tx, mut rx) = spsc::channel::<u64>(64).unwrap();
    let cells_ref = cells;
    let child = Process::new::<_, ()>(move || {
        let mut i = 0;
        loop {
            tx.send(i).unwrap();
            i += 1;
            cells_ref.get(0).store(i, Ordering::Release);
        }
    })
    .start()
    .unwrap();
    let mut next = 0;
    while next < 50_000 {
        assert_eq!(rx.recv(), Ok(next));
        next += 1;
    }
    child.kill().unwrap();
    child.join_timeout(WATCHDOG).unwrap();
    let completed = cells.get(0).load(Ordering::Acquire);
    let t = Instant::now();
    loop {
        match rx.recv_timeout(WATCHDOG) {
            Ok(v) => {
                assert_eq!(v, next);
                next += 1;
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(t.elapsed() < DEATH_BOUND);
    assert!(next == completed || next == completed + 1);
}

/// Both SPSC ends sleep at once (`Spin::NONE`) on a tiny ring, so nearly
/// every send and receive goes through the sleep and wake-up path across
/// processes: every value still arrives, in order, then `Disconnected`.
fn spsc_sleeping_waits_deliver_in_order() {
    const N: u64 = 20_000;
    let (mut tx, mut rx) = spsc::channel::<u64>(2).unwrap();
    tx.set_spin(Spin::NONE);
    rx.set_spin(Spin::NONE);
    let child = Process::new::<_, ()>(move || {
        for i in 0..N {
            tx.send(i).unwrap();
        }
    })
    .start()
    .unwrap();
    let mut sum = 0;
    for i in 0..N {
        let v = rx.recv_timeout(WATCHDOG).unwrap();
        assert_eq!(v, i);
        sum = checksum(sum, v);
    }
    assert_eq!(
        rx.recv_timeout(WATCHDOG),
        Err(RecvTimeoutError::Disconnected)
    );
    assert_eq!(sum, (0..N).fold(0, checksum));
    join_ok(&child);
}

/// A child made by a plain `fork` (not `Process`) counts its copy on first
/// use.
fn plain_fork_child_counts_itself() {
    let cells: &'static Cells = Box::leak(Box::new(Cells::new()));
    let (tx, rx) = queue::channel::<u64>(8).unwrap();
    let child = multiproc_tests::fork(|| {
        tx.send(5).unwrap(); // first use: counted here
        cells.get(0).store(1, Ordering::Release);
        while cells.get(1).load(Ordering::Acquire) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        tx.send(6).unwrap();
        0
    });
    cells.wait_for(0, 1);
    drop(tx);
    assert_eq!(rx.recv(), Ok(5));
    // The child's sender still counts: no Disconnected.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(100)),
        Err(RecvTimeoutError::Timeout)
    );
    cells.get(1).store(1, Ordering::Release);
    assert_eq!(rx.recv(), Ok(6));
    assert_eq!(child.join(WATCHDOG), multiproc_tests::Exit::Code(0));
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
}

/// A spawned process (re-executed binary) claims a sender from a token and
/// sends; the parent drops its own sender at once: the pending transfer
/// keeps the queue connected until the child has sent and gone.
fn spawn_hand_over_by_token() {
    let (tx, rx) = Queue::<u64>::new(16).unique_name().channel().unwrap();
    let token = tx.to_token().unwrap();
    drop(tx);
    let child = Process::entry("token_sender", token)
        .start_method(StartMethod::Spawn)
        .start()
        .unwrap();
    let mut sum = 0;
    let mut n = 0;
    while let Ok(v) = rx
        .recv_timeout(WATCHDOG)
        .map_err(|e| assert_eq!(e, RecvTimeoutError::Disconnected))
    {
        sum += v;
        n += 1;
    }
    assert_eq!((n, sum), (100, 99 * 100 / 2));
    join_ok(&child);
}

fn entry_token_sender(args: &[u8]) -> i32 {
    let Ok(tx) = queue::Sender::<u64>::from_token(args) else {
        return 10;
    };
    if queue::Sender::<u32>::from_token(args).is_ok() {
        return 11;
    }
    for i in 0..100 {
        if tx.send(i).is_err() {
            return 12;
        }
    }
    0
}

fn main() {
    multiproc::register_entry("token_sender", entry_token_sender).unwrap();
    multiproc::init();
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            operations_and_errors,
            errors_format_without_debug_bound,
            corrupt_segment_is_not_disconnected,
            spsc_corrupt_indices_are_not_disconnected,
            fork_sender_then_disconnected,
            fork_receiver_gone_sender_disconnected,
            producer_killed_mid_stream,
            consumer_killed_inside_recv_with,
            sender_killed_inside_send_with_others_go_on,
            sender_killed_holding_send_ref_others_go_on,
            receiver_killed_inside_recv_with_others_go_on,
            receiver_killed_holding_recv_ref_others_go_on,
            joinable_worker_killed_join_times_out,
            joinable_join_across_processes,
            stress_two_producers_two_consumers,
            spsc_across_fork_and_killed_producer,
            spsc_sleeping_waits_deliver_in_order,
            plain_fork_child_counts_itself,
            spawn_hand_over_by_token,
        ],
        WATCHDOG,
    );
}
