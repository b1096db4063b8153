//! `multiproc::queue::message_channel` and `object_channel` between real
//! processes: exactly-once delivery of mixed-size messages with several
//! forked producers and consumers, serde values, producers and consumers
//! killed with SIGKILL mid-operation, disconnection after every sender
//! died, size errors, and attaching a segment of another kind.
//!
//! A custom harness (`harness = false`), as the other multi-process tests:
//! every test runs under a watchdog.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multiproc::queue::{
    self, MessageQueue, MessageRecvError, MessageSendError, ObjectSender, QueueError,
};
use multiproc::raw::mpmc::MpmcRing;
use multiproc::raw::msgqueue::MsgQueue;
use multiproc::raw::region::{AttachError, Kind};
use multiproc::{Process, Queue};
use multiproc_tests::process_support::{run_tests, Test};
use multiproc_tests::{Cells, SharedMap};

const WATCHDOG: Duration = Duration::from_secs(240);
const MAX: usize = 512;

fn join_ok(p: &Process) {
    let st = p.join_timeout(WATCHDOG).expect("join (child hung?)");
    assert!(st.success(), "child failed: {st:?}");
}

/// A bitmap in shared memory: each message id is marked once by whichever
/// process receives it.
struct Seen(SharedMap);

impl Seen {
    fn new(ids: u64) -> &'static Self {
        Box::leak(Box::new(Seen(SharedMap::new((ids as usize).div_ceil(8)))))
    }
    fn word(&self, id: u64) -> &AtomicU64 {
        let i = (id / 64) as usize;
        assert!((i + 1) * 8 <= self.0.len());
        // SAFETY: inside the zeroed, page-aligned mapping; every bit
        // pattern is a valid AtomicU64.
        unsafe { &*self.0.as_ptr().cast::<AtomicU64>().add(i) }
    }
    /// Marks `id`; panics if it was marked already (a duplicate).
    fn mark(&self, id: u64) {
        let bit = 1u64 << (id % 64);
        let was = self.word(id).fetch_or(bit, Ordering::AcqRel);
        assert_eq!(was & bit, 0, "message {id} received twice");
    }
    fn has(&self, id: u64) -> bool {
        self.word(id).load(Ordering::Acquire) & 1 << (id % 64) != 0
    }
}

/// The message of id `id`: 0 to MAX bytes. Those of 8 bytes or more start
/// with the id; every byte after depends on the id.
fn message(id: u64) -> Vec<u8> {
    let len = (id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize % (MAX + 1);
    let mut m: Vec<u8> = (0..len).map(|k| (id as usize * 7 + k * 13) as u8).collect();
    if len >= 8 {
        m[..8].copy_from_slice(&id.to_le_bytes());
    }
    m
}

/// A hash of a message's bytes, summed (wrapping) over a set of messages:
/// the same sum for the same multiset, whatever the order.
fn hash(m: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ m.len() as u64;
    for &b in m {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Receives until disconnected, marking ids and adding hashes to cells
/// `2c` (count) and `2c + 1` (hash sum) of consumer `c`.
fn consume(rx: &queue::MessageReceiver, c: usize, cells: &Cells, seen: &Seen) {
    let mut buf = vec![0u8; MAX];
    let (mut count, mut sum) = (0u64, 0u64);
    loop {
        // Alternate copying and in-place receives.
        let got = if count % 2 == 0 {
            rx.recv_into(&mut buf).map(|n| buf[..n].to_vec())
        } else {
            rx.recv_ref().map(|m| m.to_vec())
        };
        let m = match got {
            Ok(m) => m,
            Err(MessageRecvError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        };
        if m.len() >= 8 {
            let id = u64::from_le_bytes(m[..8].try_into().unwrap());
            assert_eq!(m, message(id), "torn or foreign message");
            seen.mark(id);
        }
        count += 1;
        sum = sum.wrapping_add(hash(&m));
    }
    cells.get(2 * c).store(count, Ordering::Release);
    cells.get(2 * c + 1).store(sum, Ordering::Release);
}

// ---------------------------------------------------------------------------

/// Three forked producers and three forked consumers, 300 000 messages of
/// 0 to 512 bytes: each arrives exactly once and whole.
fn many_processes_exactly_once_mixed_sizes() {
    const PER: u64 = 100_000;
    let cells = Cells::leaked();
    let seen = Seen::new(3 * PER);
    let (tx, rx) = queue::message_channel(64, MAX as u64).unwrap();
    let consumers: Vec<Process> = (0..3)
        .map(|c| {
            let rx = rx.clone();
            Process::new::<_, ()>(move || consume(&rx, c, cells, seen))
                .start()
                .unwrap()
        })
        .collect();
    drop(rx);
    let producers: Vec<Process> = (0..3u64)
        .map(|p| {
            let tx = tx.clone();
            Process::new::<_, ()>(move || {
                for id in p * PER..(p + 1) * PER {
                    let m = message(id);
                    if id % 4 == 0 {
                        let mut w = tx.send_ref().unwrap();
                        w[..m.len()].copy_from_slice(&m);
                        w.commit(m.len()).unwrap();
                    } else {
                        tx.send(&m).unwrap();
                    }
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    drop(tx);
    producers.iter().for_each(join_ok);
    consumers.iter().for_each(join_ok);
    let count: u64 = (0..3)
        .map(|c| cells.get(2 * c).load(Ordering::Acquire))
        .sum();
    let sum = (0..3).fold(0u64, |s, c| {
        s.wrapping_add(cells.get(2 * c + 1).load(Ordering::Acquire))
    });
    assert_eq!(count, 3 * PER);
    let want = (0..3 * PER).fold(0u64, |s, id| s.wrapping_add(hash(&message(id))));
    assert_eq!(sum, want, "a message was lost, duplicated or torn");
    for id in 0..3 * PER {
        assert_eq!(seen.has(id), message(id).len() >= 8, "id {id}");
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
struct Row {
    name: String,
    values: Vec<f64>,
    tags: Vec<(u8, String)>,
}

fn row(i: usize) -> Row {
    Row {
        name: format!("row {i}"),
        values: (0..i % 20).map(|k| k as f64 * 0.5).collect(),
        tags: (0..i % 3).map(|k| (k as u8, "t".repeat(k))).collect(),
    }
}

/// Strings, `Vec<f64>` and a struct with `Vec`s through the serde queues,
/// across forks in both directions.
fn objects_across_processes() {
    let (stx, srx) = queue::object_channel::<String>(8, 256).unwrap();
    let (vtx, vrx) = queue::object_channel::<Vec<f64>>(8, 1024).unwrap();
    let child = Process::new::<_, ()>(move || {
        for i in 0..1000 {
            stx.send(&"é".repeat(i % 100)).unwrap();
            vtx.send(&vec![i as f64; i % 50]).unwrap();
        }
    })
    .start()
    .unwrap();
    for i in 0..1000 {
        assert_eq!(srx.recv().unwrap(), "é".repeat(i % 100));
        assert_eq!(vrx.recv().unwrap(), vec![i as f64; i % 50]);
    }
    assert!(srx.recv().unwrap_err().is_disconnected());
    join_ok(&child);
    let (tx, rx) = queue::object_channel::<Row>(4, 1024).unwrap();
    let worker = Process::new::<_, ()>(move || {
        for i in 0..200 {
            tx.send(&row(i)).unwrap();
        }
    })
    .start()
    .unwrap();
    for i in 0..200 {
        assert_eq!(rx.recv().unwrap(), row(i));
    }
    assert!(matches!(rx.recv(), Err(MessageRecvError::Disconnected)));
    join_ok(&worker);
}

/// A producer killed with SIGKILL while sending in a tight loop, and one
/// killed while it holds a `send_ref` slot: the other producers and the
/// consumers go on; every completed message arrives once, nothing hangs.
fn producer_killed_mid_send_others_go_on() {
    const PER: u64 = 50_000;
    const VICTIM: u64 = 1 << 20; // the loop victim's ids start here
    let cells = Cells::leaked();
    let seen = Seen::new(VICTIM + 4 * PER);
    let (tx, rx) = queue::message_channel(8, MAX as u64).unwrap();
    // The tight-loop victim reports how many sends completed in cell 100.
    let tx1 = tx.clone();
    let looper = Process::new::<_, ()>(move || {
        let mut k = 0u64;
        loop {
            let id = VICTIM + k;
            let mut m = message(id);
            m.resize(m.len().max(8), 0);
            m[..8].copy_from_slice(&id.to_le_bytes());
            tx1.send(&m).unwrap();
            k += 1;
            cells.get(100).store(k, Ordering::Release);
        }
    })
    .start()
    .unwrap();
    let producers: Vec<Process> = (0..2u64)
        .map(|p| {
            let tx = tx.clone();
            Process::new::<_, ()>(move || {
                for id in p * PER..(p + 1) * PER {
                    let mut m = message(id);
                    m.resize(m.len().max(8), 0);
                    m[..8].copy_from_slice(&id.to_le_bytes());
                    tx.send(&m).unwrap();
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    let consumers: Vec<Process> = (0..2)
        .map(|c| {
            let rx = rx.clone();
            Process::new::<_, ()>(move || {
                let mut buf = vec![0u8; MAX + 8];
                let mut n = 0u64;
                while let Ok(len) = rx.recv_into(&mut buf) {
                    let m = &buf[..len];
                    let id = u64::from_le_bytes(m[..8].try_into().unwrap());
                    let mut want = message(id);
                    want.resize(want.len().max(8), 0);
                    want[..8].copy_from_slice(&id.to_le_bytes());
                    assert_eq!(m, &want[..], "torn message");
                    seen.mark(id);
                    n += 1;
                }
                cells.get(c).store(n, Ordering::Release);
            })
            .start()
            .unwrap()
        })
        .collect();
    drop(rx);
    // Let the looper run among the others; then a slot held by a live
    // process stalls the receivers (by design, in position order) until
    // it dies: start the holder only now, and kill both.
    cells.wait_for(100, 2000);
    // The guard victim takes a slot, says so, and waits to be killed.
    let tx2 = tx;
    let holder = Process::new::<_, ()>(move || {
        let mut w = tx2.send_ref().unwrap();
        w[..4].copy_from_slice(b"half");
        cells.get(101).store(1, Ordering::Release);
        std::thread::sleep(WATCHDOG);
        drop(w);
    })
    .start()
    .unwrap();
    cells.wait_for(101, 1);
    looper.kill().unwrap();
    holder.kill().unwrap();
    let _ = looper.join_timeout(WATCHDOG).unwrap();
    let _ = holder.join_timeout(WATCHDOG).unwrap();
    let completed = cells.get(100).load(Ordering::Acquire);
    producers.iter().for_each(join_ok);
    consumers.iter().for_each(join_ok);
    for id in 0..2 * PER {
        assert!(seen.has(id), "live producer's message {id} lost");
    }
    for k in 0..completed {
        assert!(
            seen.has(VICTIM + k),
            "completed message {k} of the victim lost"
        );
    }
    // At most the one in flight when it died, besides the completed ones.
    assert!(!seen.has(VICTIM + completed + 1));
    let received: u64 = (0..2).map(|c| cells.get(c).load(Ordering::Acquire)).sum();
    let extra = u64::from(seen.has(VICTIM + completed));
    assert_eq!(received, 2 * PER + completed + extra);
}

/// A consumer killed with SIGKILL while receiving in a tight loop, and one
/// killed while it holds a `recv_ref` message: the others receive every
/// other message once, the producers are never stalled by the dead
/// consumers' slots, and nothing hangs.
fn consumer_killed_mid_recv_others_go_on() {
    const N: u64 = 100_000;
    let cells = Cells::leaked();
    let seen = Seen::new(N);
    let (tx, rx) = queue::message_channel(4, MAX as u64).unwrap();
    let rx1 = rx.clone();
    let looper = Process::new::<_, ()>(move || {
        let mut buf = vec![0u8; MAX];
        loop {
            let n = rx1.recv_into(&mut buf).unwrap();
            let id = u64::from_le_bytes(buf[..8].try_into().unwrap());
            assert!(n >= 8);
            seen.mark(id);
            cells.get(100).fetch_add(1, Ordering::AcqRel);
        }
    })
    .start()
    .unwrap();
    let rx2 = rx.clone();
    let consumer = Process::new::<_, ()>(move || {
        let mut n = 0u64;
        while let Ok(m) = rx.recv() {
            let id = u64::from_le_bytes(m[..8].try_into().unwrap());
            seen.mark(id);
            n += 1;
        }
        cells.get(0).store(n, Ordering::Release);
    })
    .start()
    .unwrap();
    let producer = Process::new::<_, ()>(move || {
        for id in 0..N {
            let mut m = message(id);
            m.resize(m.len().max(8), 0);
            m[..8].copy_from_slice(&id.to_le_bytes());
            tx.send(&m).unwrap();
            if id == N / 2 {
                // Half way: let the parent kill the victims now, while the
                // rest is still to be sent.
                cells.get(102).store(1, Ordering::Release);
            }
        }
    })
    .start()
    .unwrap();
    // A slot held by a live receiver stalls the senders one lap later (by
    // design) until it dies: start the holder only once the others are
    // well under way, then kill both victims.
    cells.wait_for(100, 1000);
    cells.wait_for(102, 1);
    let holder = Process::new::<_, ()>(move || {
        let m = rx2.recv_ref().unwrap();
        let id = u64::from_le_bytes(m[..8].try_into().unwrap());
        cells.get(101).store(id + 1, Ordering::Release);
        std::thread::sleep(WATCHDOG);
        drop(m);
    })
    .start()
    .unwrap();
    cells.wait_for(101, 1);
    looper.kill().unwrap();
    holder.kill().unwrap();
    let _ = looper.join_timeout(WATCHDOG).unwrap();
    let _ = holder.join_timeout(WATCHDOG).unwrap();
    join_ok(&producer);
    join_ok(&consumer);
    let held = cells.get(101).load(Ordering::Acquire) - 1;
    let missing: Vec<u64> = (0..N).filter(|&id| !seen.has(id)).collect();
    // The held message and at most one the looper took but had not marked.
    assert!(missing.contains(&held), "{missing:?} vs held {held}");
    assert!(missing.len() <= 2, "lost {missing:?}");
    // The looper may die between marking a message and counting it.
    let by_looper = cells.get(100).load(Ordering::Acquire);
    let by_consumer = cells.get(0).load(Ordering::Acquire);
    let marked = N - missing.len() as u64;
    assert!((marked - 1..=marked).contains(&(by_looper + by_consumer)));
}

/// Every sender dies by SIGKILL (blocked on a full queue, and idle): the
/// receiver gets what they sent, then `Disconnected`.
fn disconnected_after_all_senders_die() {
    let cells = Cells::leaked();
    let (tx, rx) = queue::object_channel::<String>(4, 64).unwrap();
    let senders: Vec<Process> = (0..2)
        .map(|s| {
            let tx = tx.clone();
            Process::new::<_, ()>(move || {
                for i in 0..6 {
                    tx.send(&format!("{s}:{i}")).unwrap();
                    cells.get(s).fetch_add(1, Ordering::AcqRel);
                }
                std::thread::sleep(WATCHDOG);
            })
            .start()
            .unwrap()
        })
        .collect();
    drop(tx);
    // They block on the full queue (4 slots, 12 messages) until the
    // receiver takes theirs; then they idle until killed.
    let mut got = Vec::new();
    while got.len() < 12 {
        got.push(rx.recv_timeout(WATCHDOG).unwrap());
    }
    cells.wait_for(0, 6);
    cells.wait_for(1, 6);
    for s in &senders {
        s.kill().unwrap();
        let _ = s.join_timeout(WATCHDOG).unwrap();
    }
    assert!(matches!(rx.recv(), Err(MessageRecvError::Disconnected)));
    assert!(rx.is_disconnected());
    got.sort();
    let mut want: Vec<String> = (0..2)
        .flat_map(|s| (0..6).map(move |i| format!("{s}:{i}")))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

/// Sizes, timeouts, close, tokens and attaching a segment of another kind,
/// in one process.
fn sizes_errors_and_other_kinds() {
    assert!(matches!(
        queue::message_channel(0, 8),
        Err(QueueError::InvalidCapacity { capacity: 0 })
    ));
    assert!(matches!(
        queue::message_channel(4, 1 << 31),
        Err(QueueError::InvalidMaxMessage { .. })
    ));
    let (tx, rx) = queue::message_channel(2, 16).unwrap();
    assert_eq!(tx.max_message(), 16);
    assert!(matches!(
        tx.try_send(&[0; 17]),
        Err(MessageSendError::TooLarge { len: 17, max: 16 })
    ));
    assert!(matches!(
        tx.send(&[0; 17]),
        Err(MessageSendError::TooLarge { len: 17, max: 16 })
    ));
    tx.send(&[]).unwrap();
    tx.try_send(&[1; 16]).unwrap();
    assert!(matches!(tx.try_send(b"x"), Err(MessageSendError::Full)));
    assert!(matches!(
        tx.send_timeout(b"x", Duration::from_millis(20)),
        Err(MessageSendError::Timeout)
    ));
    let mut small = [0u8; 15];
    assert!(matches!(
        rx.try_recv_into(&mut small),
        Err(MessageRecvError::BufferTooSmall { needed: 16 })
    ));
    assert_eq!(rx.len(), 2);
    assert_eq!(rx.recv().unwrap(), b"");
    assert_eq!(rx.try_recv().unwrap(), [1; 16]);
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(20)),
        Err(MessageRecvError::Timeout)
    ));
    // A writer committed too long sends nothing.
    let w = tx.send_ref().unwrap();
    assert!(matches!(
        w.commit(17),
        Err(MessageSendError::TooLarge { .. })
    ));
    assert!(matches!(rx.try_recv(), Err(MessageRecvError::Empty)));
    // An object whose encoding is too long.
    let (otx, orx) = queue::object_channel::<String>(2, 8).unwrap();
    assert!(matches!(
        otx.send(&"123456789".to_string()),
        Err(MessageSendError::TooLarge { len: 10, max: 8 })
    ));
    otx.send(&"1234567".to_string()).unwrap();
    assert_eq!(orx.recv().unwrap(), "1234567");
    // Garbage bytes where an object is expected: a typed decode error.
    let (btx, brx) = MessageQueue::new(2, 8).object_channel::<String>().unwrap();
    let mut w = btx.as_messages().send_ref().unwrap();
    w[..2].copy_from_slice(&[5, b'a']); // a 5-byte string, 1 byte given
    w.commit(2).unwrap();
    assert!(matches!(brx.recv(), Err(MessageRecvError::Decode(_))));
    // Dropping the last receiver disconnects senders.
    drop(rx);
    assert!(tx.send(b"x").unwrap_err().is_disconnected());
    // Tokens: a named queue's handles round-trip; other kinds are refused.
    let (ntx, nrx) = queue::MessageQueue::new(4, 32)
        .unique_name()
        .object_channel::<Vec<u32>>()
        .unwrap();
    let t = ntx.to_token().unwrap();
    assert!(matches!(
        ObjectSender::<String>::from_token(&t),
        Err(QueueError::BadToken { .. })
    ));
    assert!(matches!(
        queue::Sender::<u64>::from_token(&t),
        Err(QueueError::BadToken { .. })
    ));
    let tx2 = ObjectSender::<Vec<u32>>::from_token(&t).unwrap();
    assert!(matches!(
        ObjectSender::<Vec<u32>>::from_token(&t),
        Err(QueueError::AlreadyClaimed)
    ));
    tx2.send(&vec![1, 2, 3]).unwrap();
    assert_eq!(nrx.recv().unwrap(), [1, 2, 3]);
    let (qtx, _qrx) = Queue::<u64>::new(4).unique_name().channel().unwrap();
    let qt = qtx.to_token().unwrap();
    assert!(matches!(
        queue::MessageSender::from_token(&qt),
        Err(QueueError::BadToken { .. })
    ));
    // The core: a region holding another kind is refused at attach, here
    // from a forked child.
    let map = SharedMap::new(4096);
    MpmcRing::<u64>::create(map.region(), 4).unwrap();
    let child = Process::new(move || match MsgQueue::attach(map.region()) {
        Err(AttachError::KindMismatch {
            found: 2,
            expected: Kind::MsgQueue,
        }) => {}
        other => panic!("{other:?}"),
    })
    .start()
    .unwrap();
    join_ok(&child);
}

fn main() {
    multiproc::init();
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            many_processes_exactly_once_mixed_sizes,
            objects_across_processes,
            producer_killed_mid_send_others_go_on,
            consumer_killed_mid_recv_others_go_on,
            disconnected_after_all_senders_die,
            sizes_errors_and_other_kinds,
        ],
        WATCHDOG,
    );
}
