//! `multiproc::spsc` ends handed to processes started with the spawn and
//! forkserver start methods by token: a producer and a consumer claimed in
//! the child (count and checksum, then `Disconnected`), a claimed producer
//! killed with `SIGKILL` mid-stream, and bad tokens (wrong element type,
//! truncated, claimed twice, maker exited) as typed errors, in the child
//! and in the parent.
//!
//! A custom harness (`harness = false`): the children re-run this binary,
//! whose `main` registers the entry points and calls `multiproc::init()`
//! first. Every test runs under a watchdog.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::queue::{QueueError, RecvTimeoutError, SendTimeoutError};
use multiproc::shm::SharedMemory;
use multiproc::spsc::{Consumer, Producer, Spsc};
use multiproc::{Process, StartMethod};
use multiproc_tests::checksum;
use multiproc_tests::process_support::{run_tests, Test};

const WATCHDOG: Duration = Duration::from_secs(60);
/// Generous bound for "noticed a death": the design says ~25 ms.
const DEATH_BOUND: Duration = Duration::from_secs(5);
const METHODS: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::Forkserver];

/// The element: a counter and a value derived from it, so that a torn or
/// misplaced value shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Item {
    i: u64,
    v: u64,
}

fn item(i: u64) -> Item {
    Item {
        i,
        v: i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555,
    }
}

/// The checksum of the items `0..n`, in order.
fn expected_sum(n: u64) -> u64 {
    (0..n).fold(0, |acc, i| checksum(checksum(acc, i), item(i).v))
}

/// `n` then the token: the arguments of the entry points.
fn args(n: u64, token: &[u8]) -> Vec<u8> {
    let mut a = n.to_le_bytes().to_vec();
    a.extend_from_slice(token);
    a
}

fn split_args(args: &[u8]) -> Option<(u64, &[u8])> {
    let (n, token) = args.split_at_checked(8)?;
    Some((u64::from_le_bytes(n.try_into().ok()?), token))
}

fn join_ok(p: &Process) {
    let st = p.join_timeout(WATCHDOG).expect("join (child hung?)");
    assert!(st.success(), "child failed: {st:?}");
}

fn start(method: StartMethod, entry: &str, args: Vec<u8>) -> Process {
    Process::entry(entry, args)
        .start_method(method)
        .start()
        .unwrap()
}

// ---------------------------------------------------------------------------

/// The producer goes to the child, which sends N items; the parent (which
/// gave its producer up at once) receives all, in order, then
/// `Disconnected` once the child has exited.
fn producer_token_to_child() {
    const N: u64 = 100_000;
    for method in METHODS {
        let (tx, mut rx) = Spsc::<Item>::new(64).unique_name().channel().unwrap();
        let child = start(method, "spsc_send", args(N, &tx.into_token().unwrap()));
        let mut sum = 0;
        for i in 0..N {
            let v = rx.recv_timeout(WATCHDOG).unwrap();
            assert_eq!(v, item(i), "{method:?}");
            sum = checksum(checksum(sum, v.i), v.v);
        }
        assert_eq!(sum, expected_sum(N));
        join_ok(&child);
        assert_eq!(
            rx.recv_timeout(WATCHDOG),
            Err(RecvTimeoutError::Disconnected)
        );
    }
}

fn entry_spsc_send(args: &[u8]) -> i32 {
    let Some((n, token)) = split_args(args) else {
        return 9;
    };
    // A wrong element type is refused without using the token up.
    if !matches!(
        Producer::<[u64; 2]>::from_token(token),
        Err(QueueError::BadToken { .. })
    ) {
        return 10;
    }
    let Ok(mut tx) = Producer::<Item>::from_token(token) else {
        return 11;
    };
    if !matches!(
        Producer::<Item>::from_token(token),
        Err(QueueError::AlreadyClaimed)
    ) {
        return 12;
    }
    for i in 0..n {
        if tx.send(item(i)).is_err() {
            return 13;
        }
    }
    0
}

/// The consumer goes to the child, which checks count and checksum and
/// then waits for `Disconnected` after the parent drops its producer.
fn consumer_token_to_child() {
    const N: u64 = 100_000;
    for method in METHODS {
        let (mut tx, rx) = Spsc::<Item>::new(64).unique_name().channel().unwrap();
        let child = start(method, "spsc_recv", args(N, &rx.into_token().unwrap()));
        for i in 0..N {
            tx.send_timeout(item(i), WATCHDOG).unwrap();
        }
        drop(tx);
        join_ok(&child);
    }
}

fn entry_spsc_recv(args: &[u8]) -> i32 {
    let Some((n, token)) = split_args(args) else {
        return 9;
    };
    let Ok(mut rx) = Consumer::<Item>::from_token(token) else {
        return 11;
    };
    let mut sum = 0;
    for i in 0..n {
        match rx.recv_timeout(WATCHDOG) {
            Ok(v) if v == item(i) => sum = checksum(checksum(sum, v.i), v.v),
            Ok(_) => return 12,
            Err(_) => return 13,
        }
    }
    if sum != expected_sum(n) {
        return 14;
    }
    match rx.recv_timeout(WATCHDOG) {
        Err(RecvTimeoutError::Disconnected) => 0,
        _ => 15,
    }
}

/// The producer claimed by a spawned child is killed with `SIGKILL`
/// mid-stream: the parent gets every value whose send completed, in
/// order, then `Disconnected` within a bounded time.
fn claimed_producer_killed_mid_stream() {
    for method in METHODS {
        let progress = SharedMemory::create_unique(4096).unwrap();
        // SAFETY: a page-aligned mapping of 4096 bytes, zeroed; AtomicU64 is
        // valid for every bit pattern.
        let done = unsafe { &*progress.as_ptr().cast::<AtomicU64>() };
        let (tx, mut rx) = Spsc::<Item>::new(64).unique_name().channel().unwrap();
        let name = progress.name().unwrap().as_bytes().to_vec();
        let mut a = vec![name.len() as u8];
        a.extend_from_slice(&name);
        a.extend_from_slice(&tx.into_token().unwrap());
        let child = start(method, "spsc_send_forever", a);
        let mut next = 0;
        while next < 20_000 {
            assert_eq!(rx.recv_timeout(WATCHDOG), Ok(item(next)), "{method:?}");
            next += 1;
        }
        child.kill().unwrap();
        child.join_timeout(WATCHDOG).expect("killed child hung");
        let completed = done.load(Ordering::Acquire);
        let t = Instant::now();
        loop {
            match rx.recv_timeout(WATCHDOG) {
                Ok(v) => {
                    assert_eq!(v, item(next));
                    next += 1;
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(t.elapsed() < DEATH_BOUND, "{method:?}: {:?}", t.elapsed());
        // Every completed send arrived (the last may have completed just
        // before the kill, without its count stored).
        assert!(
            next == completed || next == completed + 1,
            "{method:?}: {next} received, {completed} completed"
        );
        assert!(rx.is_disconnected());
    }
}

fn entry_spsc_send_forever(args: &[u8]) -> i32 {
    let Some((&len, rest)) = args.split_first() else {
        return 9;
    };
    let Some((name, token)) = rest.split_at_checked(len as usize) else {
        return 9;
    };
    let Ok(progress) = std::str::from_utf8(name).map(SharedMemory::open) else {
        return 10;
    };
    let Ok(progress) = progress else {
        return 10;
    };
    // SAFETY: as in the parent: the same 4096-byte page.
    let done = unsafe { &*progress.as_ptr().cast::<AtomicU64>() };
    let Ok(mut tx) = Producer::<Item>::from_token(token) else {
        return 11;
    };
    let mut i = 0;
    loop {
        if tx.send(item(i)).is_err() {
            return 12;
        }
        i += 1;
        done.store(i, Ordering::Release);
    }
}

/// Bad tokens, across processes: the child claims the consumer after
/// trying a wrong type and truncated copies; the parent's own second
/// claim then fails, and the parent keeps its producer connected.
fn bad_tokens_and_double_claim() {
    let (mut tx, rx) = Spsc::<Item>::new(8).unique_name().channel().unwrap();
    let token = rx.into_token().unwrap();
    assert!(matches!(
        Consumer::<u64>::from_token(&token),
        Err(QueueError::BadToken { .. })
    ));
    assert!(matches!(
        Producer::<Item>::from_token(&token),
        Err(QueueError::BadToken { .. })
    ));
    for n in [0, 1, 8, 39, 40, token.len() - 1] {
        assert!(matches!(
            Consumer::<Item>::from_token(&token[..n]),
            Err(QueueError::BadToken { .. })
        ));
    }
    let child = start(StartMethod::Spawn, "spsc_claim_bad", args(3, &token));
    for i in 0..3 {
        tx.send_timeout(item(i), WATCHDOG).unwrap();
    }
    join_ok(&child);
    // Claimed by the child (and dropped there): not claimable here.
    assert!(matches!(
        Consumer::<Item>::from_token(&token),
        Err(QueueError::AlreadyClaimed)
    ));
    assert!(tx.is_disconnected());
    // Room left: accepted and never read; then full and gone.
    let mut sent = 0;
    loop {
        match tx.send_timeout(item(sent), WATCHDOG) {
            Ok(()) => sent += 1,
            Err(SendTimeoutError::Disconnected(_)) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(sent, 8);
}

fn entry_spsc_claim_bad(args: &[u8]) -> i32 {
    let Some((n, token)) = split_args(args) else {
        return 9;
    };
    if !matches!(
        Consumer::<[u8; 16]>::from_token(token),
        Err(QueueError::BadToken { .. })
    ) {
        return 10;
    }
    if !matches!(
        Consumer::<Item>::from_token(&token[..token.len() / 2]),
        Err(QueueError::BadToken { .. })
    ) {
        return 11;
    }
    let Ok(mut rx) = Consumer::<Item>::from_token(token) else {
        return 12;
    };
    if !matches!(
        Consumer::<Item>::from_token(token),
        Err(QueueError::AlreadyClaimed)
    ) {
        return 13;
    }
    for i in 0..n {
        if rx.recv_timeout(WATCHDOG) != Ok(item(i)) {
            return 14;
        }
    }
    0
}

/// A token whose maker exited unclaimed is void: its claim fails with a
/// typed error, and the other side sees `Disconnected`.
fn token_of_an_exited_maker() {
    let (tx, mut rx) = Spsc::<Item>::new(8).unique_name().channel().unwrap();
    let (mut here, mut there) = multiproc::pipe().unwrap();
    let child = Process::new::<_, ()>(move || {
        let mut tx = tx;
        tx.send(item(0)).unwrap();
        there.send_bytes(&tx.into_token().unwrap()).unwrap();
    })
    .start()
    .unwrap();
    let token = here.recv_bytes_timeout(WATCHDOG).unwrap();
    join_ok(&child);
    assert_eq!(rx.recv_timeout(WATCHDOG), Ok(item(0)));
    assert_eq!(
        rx.recv_timeout(WATCHDOG),
        Err(RecvTimeoutError::Disconnected)
    );
    assert!(matches!(
        Producer::<Item>::from_token(&token),
        Err(QueueError::BadToken { .. })
    ));
}

fn main() {
    multiproc::register_entry("spsc_send", entry_spsc_send).unwrap();
    multiproc::register_entry("spsc_recv", entry_spsc_recv).unwrap();
    multiproc::register_entry("spsc_send_forever", entry_spsc_send_forever).unwrap();
    multiproc::register_entry("spsc_claim_bad", entry_spsc_claim_bad).unwrap();
    multiproc::init();
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            producer_token_to_child,
            consumer_token_to_child,
            claimed_producer_killed_mid_stream,
            bad_tokens_and_double_claim,
            token_of_an_exited_maker,
        ],
        WATCHDOG,
    );
}
