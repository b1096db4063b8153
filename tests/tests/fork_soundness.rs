//! The `fork` start method cannot break what safe code relies on:
//!
//! * a value moved into a fork child is dropped there only, never also in
//!   the parent (a core role handle keeps its role; a destructor with a
//!   cross-process effect runs once);
//! * queue handles moved into a child hand their counts over without the
//!   parent's destructor (used, untouched, or passed on to a grandchild);
//! * a fork start from a multi-threaded process is refused, unless the
//!   caller opts in through the `unsafe` builder method.
//!
//! (That lock guards cannot be moved into a child at all is shown by the
//! `compile_fail` examples of `multiproc::sync::Guard` and the core guards.)
//!
//! The tests fork from the main thread: this binary has its own harness
//! (`harness = false`), and runs under cargo-nextest, one process per test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multiproc::process::ProcessError;
use multiproc::queue::{self, RecvTimeoutError};
use multiproc::{Process, StartMethod};
use multiproc_core::role::RoleTaken;
use multiproc_core::spsc::{PopError, SpscRing};
use multiproc_tests::process_support::{run_tests, Test};
use multiproc_tests::SharedMap;
use multiproc_tests::{join_process_ok, Cells};

const WATCHDOG: Duration = Duration::from_secs(60);

fn join_ok(p: &Process) {
    join_process_ok(p, WATCHDOG);
}

/// The repro of the issue: a core `spsc::Producer<'static>` moved into a
/// fork child. The parent's copy must not release the role: while the
/// child lives, a second claim of the producer in the parent fails with
/// `RoleTaken` (else two producers would race on the slots). The child's
/// drop then releases it (by the claim it holds, though the role word
/// names the parent), and the role can be claimed again.
fn core_producer_moved_into_fork_child_keeps_its_role() {
    let cells = Cells::leaked();
    let map: &'static SharedMap = Box::leak(Box::new(SharedMap::new(
        SpscRing::<u64>::memory_size(16).unwrap(),
    )));
    let ring: SpscRing<'static, u64> = SpscRing::create(map.region(), 16).unwrap();
    let mut rx = ring.consumer().unwrap();
    let mut tx = ring.producer().unwrap();
    let me = std::process::id();
    let child = Process::new(move || {
        tx.try_push(7).unwrap();
        cells.get(0).store(1, Ordering::Release);
        cells.wait_for(1, 1);
        tx.try_push(8).unwrap();
        // `tx` is dropped here: the role is released.
    })
    .start()
    .unwrap();
    cells.wait_for(0, 1);
    // The parent's copy of `tx` is gone (start returned): the role is the
    // child's, recorded under the parent's pid.
    assert_eq!(ring.producer().err(), Some(RoleTaken { pid: me }));
    assert_eq!(rx.try_pop(), Ok(7));
    cells.get(1).store(1, Ordering::Release);
    join_ok(&child);
    assert_eq!(rx.try_pop(), Ok(8));
    assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
    let mut tx2 = ring.producer().expect("released by the child");
    tx2.try_push(9).unwrap();
    assert_eq!(rx.try_pop(), Ok(9));
}

/// Counts its drops in shared memory: a stand-in for any value whose
/// destructor acts outside the process (unlocks, unlinks, releases).
struct CountsDrops(&'static AtomicU64);

impl Drop for CountsDrops {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// A value moved into a fork child is dropped once, by the child: the
/// parent never runs its destructor (neither at the start nor later).
fn value_moved_into_fork_child_is_dropped_only_there() {
    let cells = Cells::leaked();
    let drops = CountsDrops(cells.get(2));
    let boxed = Box::new(CountsDrops(cells.get(3)));
    let child = Process::new(move || {
        let _keep = (&drops, &boxed);
        cells.get(0).store(1, Ordering::Release);
        cells.wait_for(1, 1);
        assert_eq!(drops.0.load(Ordering::Acquire), 0, "dropped in the parent");
        // Both are dropped here, when the closure returns.
    })
    .start()
    .unwrap();
    cells.wait_for(0, 1);
    assert_eq!(
        cells.get(2).load(Ordering::Acquire),
        0,
        "dropped in the parent"
    );
    assert_eq!(
        cells.get(3).load(Ordering::Acquire),
        0,
        "dropped in the parent"
    );
    cells.get(1).store(1, Ordering::Release);
    join_ok(&child);
    assert_eq!(cells.get(2).load(Ordering::Acquire), 1, "dropped once");
    assert_eq!(cells.get(3).load(Ordering::Acquire), 1, "dropped once");
}

/// A sender moved into a fork child that never touches it: its count is
/// still the parent's (whose copy is forgotten), and the child's drop
/// withdraws it, so the parent's receiver sees `Disconnected`.
fn untouched_sender_in_fork_child_disconnects_at_its_drop() {
    let cells = Cells::leaked();
    let (tx, rx) = queue::channel::<u64>(8).unwrap();
    let child = Process::new(move || {
        cells.wait_for(0, 1);
        drop(tx);
    })
    .start()
    .unwrap();
    // The child holds the sender: connected.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(50)),
        Err(RecvTimeoutError::Timeout)
    );
    cells.get(0).store(1, Ordering::Release);
    join_ok(&child);
    assert_eq!(
        rx.recv_timeout(WATCHDOG),
        Err(RecvTimeoutError::Disconnected)
    );
}

/// A sender given to a fork child as the argument of `Process::with` and
/// never used there: the child is killed with SIGKILL, and the parent's
/// receiver sees `Disconnected` (the child counted the sender in its own
/// name before its function ran). With the sender captured instead, the
/// count would stay with the parent until the child's first use.
fn sender_given_with_process_with_goes_with_a_killed_child() {
    let cells = Cells::leaked();
    let (tx, rx) = queue::channel::<u64>(8).unwrap();
    let child = Process::with(tx, move |_tx| {
        cells.get(0).store(1, Ordering::Release);
        std::thread::sleep(WATCHDOG);
    })
    .start()
    .unwrap();
    cells.wait_for(0, 1);
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(50)),
        Err(RecvTimeoutError::Timeout),
        "the child holds the sender"
    );
    child.kill().unwrap();
    let _ = child.join_timeout(WATCHDOG).unwrap();
    assert_eq!(
        rx.recv_timeout(WATCHDOG),
        Err(RecvTimeoutError::Disconnected)
    );
}

/// A sender moved into a child, which moves it on, untouched, into a
/// grandchild: the grandchild's first send takes the count from the
/// grandparent (through the child), and its exit disconnects.
fn sender_passed_on_to_a_grandchild_keeps_counting() {
    let cells = Cells::leaked();
    let (tx, rx) = queue::channel::<u64>(8).unwrap();
    let child = Process::new(move || {
        let grandchild = Process::new(move || {
            tx.send(5).unwrap();
            cells.wait_for(0, 1);
            tx.send(6).unwrap();
        })
        .start()
        .unwrap();
        join_ok(&grandchild);
    })
    .start()
    .unwrap();
    assert_eq!(rx.recv_timeout(WATCHDOG), Ok(5));
    // The grandchild still holds the sender: connected.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(50)),
        Err(RecvTimeoutError::Timeout)
    );
    cells.get(0).store(1, Ordering::Release);
    assert_eq!(rx.recv_timeout(WATCHDOG), Ok(6));
    join_ok(&child);
    assert_eq!(
        rx.recv_timeout(WATCHDOG),
        Err(RecvTimeoutError::Disconnected)
    );
}

/// A plain `fork` inside a `Process` child inherits the child's record of
/// its `Process` ancestors, but is not one of those children: its copy of a
/// sender the child still holds untouched is counted afresh, and its use
/// must not withdraw the count the child's copy stands on (else the queue
/// reads as disconnected while the child still holds a sender).
fn plain_fork_inside_a_process_child_does_not_take_the_handed_count() {
    let cells = Cells::leaked();
    let (tx, rx) = queue::channel::<u64>(8).unwrap();
    let child = Process::new(move || {
        let tx_ref = &tx;
        let plain = multiproc_tests::fork(move || {
            // First use here: counted under this process, which exits
            // without dropping it (its count dies with it).
            i32::from(tx_ref.send(5).is_err())
        });
        assert_eq!(plain.join(WATCHDOG), multiproc_tests::Exit::Code(0));
        cells.get(0).store(1, Ordering::Release);
        cells.wait_for(1, 1);
        tx.send(6).unwrap();
    })
    .start()
    .unwrap();
    assert_eq!(rx.recv_timeout(WATCHDOG), Ok(5));
    cells.wait_for(0, 1);
    // The plain fork is gone; the child still holds its untouched sender,
    // counted under this process: connected.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(300)),
        Err(RecvTimeoutError::Timeout)
    );
    cells.get(1).store(1, Ordering::Release);
    assert_eq!(rx.recv_timeout(WATCHDOG), Ok(6));
    join_ok(&child);
    assert_eq!(
        rx.recv_timeout(WATCHDOG),
        Err(RecvTimeoutError::Disconnected)
    );
}

/// A fork start while another thread runs is refused with a typed error
/// that points to spawn/forkserver; the `unsafe` opt-in starts it; once
/// the thread is joined, a plain fork start works again.
fn fork_with_threads_is_refused_unless_allowed() {
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let _ = stop_rx.recv();
    });
    let e = Process::new(|| ()).start().unwrap_err();
    assert!(
        matches!(e, ProcessError::ForkWithThreads { threads: Some(2) }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("2 threads") && msg.contains("spawn"), "{msg}");
    // An entry point with the fork method is refused too.
    let e = Process::entry("none", Vec::new())
        .start_method(StartMethod::Fork)
        .start()
        .unwrap_err();
    assert!(matches!(e, ProcessError::ForkWithThreads { .. }), "{e:?}");
    // SAFETY: the other thread waits on a channel and holds no lock the
    // child takes; the child only computes.
    let p = unsafe { Process::new(|| 40 + 2).allow_fork_with_threads() }
        .start()
        .unwrap();
    assert_eq!(p.join_timeout(WATCHDOG).unwrap().code(), Some(42));
    stop_tx.send(()).unwrap();
    thread.join().unwrap();
    // The joined thread may leave the kernel's count a moment later: the
    // start waits for that.
    join_ok(&Process::new(|| ()).start().unwrap());
}

fn main() {
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            core_producer_moved_into_fork_child_keeps_its_role,
            value_moved_into_fork_child_is_dropped_only_there,
            untouched_sender_in_fork_child_disconnects_at_its_drop,
            sender_passed_on_to_a_grandchild_keeps_counting,
            plain_fork_inside_a_process_child_does_not_take_the_handed_count,
            sender_given_with_process_with_goes_with_a_killed_child,
            fork_with_threads_is_refused_unless_allowed,
        ],
        WATCHDOG,
    );
}
