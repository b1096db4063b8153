//! Peer tables between real processes: more forked holders than the old
//! fixed table had, a deliberately small table (typed errors, no
//! miscount), a dead sender whose pid is reused, a JoinableQueue consumer
//! killed between `get` and `task_done`, and the system calls of an idle
//! blocked receiver (measured with strace when `MULTIPROC_STRACE=1`).
//!
//! A custom harness (`harness = false`); every test runs under a watchdog.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc::queue::{JoinError, JoinableQueue, Queue, QueueError, RecvTimeoutError};
use multiproc::raw::peers::PeersError;
use multiproc::Process;
use multiproc_tests::process_support::{run_tests, Test};
use multiproc_tests::{fork, Exit};
use multiproc_tests::{join_process_ok, spawn_with_pid, Cells};

const WATCHDOG: Duration = Duration::from_secs(120);
/// Generous bound for "noticed a death" (the docs say about 25 ms).
const DEATH_BOUND: Duration = Duration::from_secs(10);

/// The system calls per second of a receiver blocked in `recv` while
/// `SENDERS` forked children hold idle senders: `strace -c -f -p` over
/// 10 s. Only with `MULTIPROC_STRACE=1` (strace must be installed); prints
/// the figure.
fn idle_receiver_syscalls() {
    if std::env::var_os("MULTIPROC_STRACE").is_none() {
        return;
    }
    let senders: usize = std::env::var("MULTIPROC_STRACE_SENDERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let cells = Cells::leaked();
    let (tx, rx) = Queue::<u64>::new(16).channel().unwrap();
    let children: Vec<Process> = (0..senders)
        .map(|_| {
            // Given with `Process::with`: each child counts its sender in
            // its own name, so the receiver's checks ask about 64 other
            // processes (a captured, untouched sender would stay counted
            // under this process, which costs no check at all).
            Process::with(tx.clone(), move |_tx| {
                cells.get(0).fetch_add(1, Ordering::AcqRel);
                let end = Instant::now() + WATCHDOG;
                while cells.get(1).load(Ordering::Acquire) == 0 && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    drop(tx);
    cells.wait_for(0, senders as u64);
    let out = format!("/tmp/multiproc-strace-{}.txt", std::process::id());
    let mut strace = std::process::Command::new("timeout")
        .args(["10", "strace", "-c", "-f", "-o", &out, "-p"])
        .arg(std::process::id().to_string())
        .spawn()
        .expect("strace");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(11)),
        Err(RecvTimeoutError::Timeout)
    );
    let _ = strace.wait();
    let report = std::fs::read_to_string(&out).expect("strace output");
    let _ = std::fs::remove_file(&out);
    let total: u64 = report
        .lines()
        .find(|l| l.trim_end().ends_with("total"))
        .and_then(|l| l.split_whitespace().nth(3).and_then(|n| n.parse().ok()))
        .expect("strace total");
    eprintln!("{report}");
    eprintln!(
        "idle receiver, {senders} senders: {total} system calls in ~10 s = {} per second",
        total / 10
    );
    cells.get(1).store(1, Ordering::Release);
    for c in &children {
        c.join_timeout(WATCHDOG).expect("child hung");
    }
}

fn join_ok(p: &Process) {
    join_process_ok(p, WATCHDOG);
}

/// More forked children than the old 64-slot table held, each holding a
/// sender (and cloning it in the child): with the default table every one
/// is counted, and once all have exited the receiver sees `Disconnected`
/// (the old table left the counts that did not fit on the parent, so it
/// never did, and the 64th child's `clone` panicked).
fn many_forked_senders_are_all_counted() {
    const N: usize = 80;
    let cells = Cells::leaked();
    let (tx, rx) = Queue::<u64>::new(128).channel().unwrap();
    let children: Vec<Process> = (0..N)
        .map(|i| {
            let tx = tx.clone();
            Process::new(move || {
                let again = tx.clone();
                again.send(i as u64).unwrap();
                cells.get(0).fetch_add(1, Ordering::AcqRel);
                let end = Instant::now() + WATCHDOG;
                while cells.get(1).load(Ordering::Acquire) == 0 && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    drop(tx);
    cells.wait_for(0, N as u64);
    let mut sum = 0;
    for _ in 0..N {
        sum += rx.recv_timeout(WATCHDOG).unwrap();
    }
    assert_eq!(sum, (N * (N - 1) / 2) as u64);
    cells.get(1).store(1, Ordering::Release);
    for c in &children {
        join_ok(c);
    }
    assert_eq!(
        rx.recv_timeout(DEATH_BOUND),
        Err(RecvTimeoutError::Disconnected)
    );
}

/// A table of 4 slots: this process and 3 children that use their senders
/// fit; a 4th `Process` child cannot count itself: its `try_clone` is a
/// typed error, not a panic, and its inherited sender stays counted under
/// the parent (it still sends); `try_clone` in a plain-fork child is an
/// error too; and the counts stay exact: the receiver sees `Disconnected`
/// once every child has exited and the parent dropped its sender.
fn small_table_refuses_the_extra_process() {
    let cells = Cells::leaked();
    let (tx, rx) = Queue::<u64>::new(16).max_peers(4).channel().unwrap();
    let children: Vec<Process> = (0..3)
        .map(|_| {
            let tx = tx.clone();
            Process::new(move || {
                // A use counts the handle under this child.
                tx.send(1).unwrap();
                cells.get(0).fetch_add(1, Ordering::AcqRel);
                let end = Instant::now() + WATCHDOG;
                while cells.get(1).load(Ordering::Acquire) == 0 && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    cells.wait_for(0, 3);
    let extra = tx.clone();
    let extra_child = Process::new(move || {
        match extra.try_clone() {
            Err(QueueError::Peers(PeersError::Full { slots: 4 })) => {}
            other => panic!("expected a full table, got {other:?}"),
        }
        extra.send(99).unwrap();
    })
    .start()
    .unwrap();
    join_ok(&extra_child);
    let mut got: Vec<u64> = (0..4).map(|_| rx.recv_timeout(WATCHDOG).unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, [1, 1, 1, 99]);
    // A plain fork child: its clone cannot be counted, and says so.
    let tx2 = tx.clone();
    let plain = fork(move || match tx2.try_clone() {
        Err(QueueError::Peers(PeersError::Full { slots: 4 })) => 0,
        other => {
            eprintln!("expected a full table, got {other:?}");
            1
        }
    });
    assert_eq!(plain.join(WATCHDOG), Exit::Code(0));
    drop(tx);
    assert_eq!(rx.try_recv(), Err(multiproc::queue::TryRecvError::Empty));
    cells.get(1).store(1, Ordering::Release);
    for c in &children {
        join_ok(c);
    }
    assert_eq!(
        rx.recv_timeout(DEATH_BOUND),
        Err(RecvTimeoutError::Disconnected)
    );
}

/// The only sender is killed with SIGKILL and its pid is reused at once by
/// an unrelated process (`sleep 20`): the receiver still sees
/// `Disconnected` (a slot names its owner by pid plus start time).
fn reused_pid_sender_still_disconnects() {
    let cells = Cells::leaked();
    let (tx, rx) = Queue::<u64>::new(16).channel().unwrap();
    let child = Process::new::<_, ()>(move || {
        // A use counts the handle under this child (a handle it never
        // touched would still count under the parent: see `Queue::max_peers`).
        tx.send(7).unwrap();
        cells.get(0).store(1, Ordering::Release);
        // Killed by the parent; gone by itself after the watchdog.
        std::thread::sleep(WATCHDOG);
    })
    .start()
    .unwrap();
    cells.wait_for(0, 1);
    let victim = child.pid();
    let before = multiproc::raw::identity::of_pid(victim).expect("victim runs");
    // Identities tell processes apart by start time in clock ticks (10 ms
    // at 100 Hz): let the victim's tick pass before its pid is reused.
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap();
    let _ = child.join_timeout(WATCHDOG).unwrap();
    let mut sleeper = spawn_with_pid(victim).expect("could not reuse the victim's pid");
    assert_eq!(sleeper.id(), victim);
    let after = multiproc::raw::identity::of_pid(victim).expect("sleeper runs");
    assert_ne!(before, after, "the pid names another process now");
    assert_eq!(rx.recv_timeout(WATCHDOG), Ok(7));
    let r = rx.recv_timeout(DEATH_BOUND);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(r, Err(RecvTimeoutError::Disconnected));
}

/// A JoinableQueue consumer killed between `get` and `task_done`: `join`
/// returns `TaskLost` naming it instead of waiting forever; a `task_done`
/// acknowledges the loss and `join` then succeeds.
fn joinable_consumer_killed_before_task_done() {
    let cells = Cells::leaked();
    let q = JoinableQueue::<u64>::with_capacity(8).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let worker = q.clone();
    let child = Process::new::<_, ()>(move || {
        worker.get().unwrap();
        worker.task_done().unwrap();
        worker.get().unwrap();
        cells.get(0).store(1, Ordering::Release);
        // Killed by the parent; gone by itself after the watchdog.
        std::thread::sleep(WATCHDOG);
    })
    .start()
    .unwrap();
    cells.wait_for(0, 1);
    let pid = child.pid();
    child.kill().unwrap();
    assert_eq!(q.join(), Err(JoinError::TaskLost { pid, tasks: 1 }));
    let _ = child.join_timeout(WATCHDOG).unwrap();
    q.task_done().unwrap();
    assert_eq!(q.join(), Ok(()));
    assert!(q.task_done().is_err());
}

fn main() {
    multiproc::init();
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            many_forked_senders_are_all_counted,
            small_table_refuses_the_extra_process,
            reused_pid_sender_still_disconnects,
            joinable_consumer_killed_before_task_done,
            idle_receiver_syscalls,
        ],
        WATCHDOG,
    )
}
