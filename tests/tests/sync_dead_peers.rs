//! Dead peers in the sync objects, with real processes and `SIGKILL`: a
//! semaphore holder killed (its unit comes back, the next acquirer learns
//! of it, a bounded semaphore keeps its bound, a reused pid does not pass
//! for the dead holder); a barrier party killed before arriving (the
//! others' `wait` fails naming it); `JoinableQueue` and `SimpleQueue`
//! reaching spawn and forkserver children by name and by token.
//!
//! A custom harness (`harness = false`): the spawn and forkserver tests
//! re-run this binary, whose `main` registers the entry points and calls
//! `multiproc::init()` first. Every test runs under a watchdog: a wait that
//! never learns of a dead peer fails it instead of hanging.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc::queue::{JoinableQueue, SimpleQueue};
use multiproc::sync::{Barrier, BarrierError, BoundedSemaphore, OwnerDied, Semaphore};
use multiproc::{Process, StartMethod};
use multiproc_tests::process_support::{kill9, run_tests, wait_dead, Test};
use multiproc_tests::{join_process_ok, spawn_with_pid, Cells};

const WATCHDOG: Duration = Duration::from_secs(60);

fn start(f: impl FnOnce() + Send + 'static) -> Process {
    Process::new(f).start().expect("fork")
}

fn join_ok(p: &Process) {
    join_process_ok(p, WATCHDOG);
}

fn unique(tag: &str) -> String {
    format!("/mp-deadpeers-{tag}-{}", std::process::id())
}

/// A child that runs `f`, reports on cell 0, then sleeps until killed.
fn holder(cells: &'static Cells, f: impl FnOnce() + Send + 'static) -> Process {
    let p = start(move || {
        f();
        cells.get(0).store(1, Ordering::Release);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    cells.wait_for(0, 1);
    p
}

/// Kills `p` with SIGKILL and reaps it; returns its pid.
fn kill_and_reap(p: &Process) -> u32 {
    let pid = p.pid();
    kill9(pid);
    let st = p.join_timeout(WATCHDOG).expect("join (child hung?)");
    assert!(!st.success());
    pid
}

/// The holder of a one-unit semaphore is killed: the next `acquire` (no
/// timeout) gets the unit and learns that its holder died.
fn semaphore_holder_killed_next_acquire_learns() {
    let s = Semaphore::new(1).unwrap();
    let cells = Cells::leaked();
    let child = {
        let s = s.clone();
        holder(cells, move || s.acquire().unwrap())
    };
    assert!(!s.try_acquire());
    let pid = kill_and_reap(&child);
    assert_eq!(s.acquire(), Err(OwnerDied { pid }));
    assert_eq!((s.value(), s.held_by_me()), (0, 1));
    s.release().unwrap();
    assert_eq!(s.value(), 1);
    assert_eq!(s.acquire(), Ok(()));
    s.release().unwrap();
}

/// A bounded semaphore of 2 whose holder of both units is killed: both
/// come back (one to the acquirer that learns of the death), and the bound
/// holds afterwards.
fn bounded_semaphore_keeps_bound_after_recovery() {
    let s = BoundedSemaphore::new(2).unwrap();
    let cells = Cells::leaked();
    let child = {
        let s = s.clone();
        holder(cells, move || {
            s.acquire().unwrap();
            s.acquire().unwrap();
        })
    };
    let pid = kill_and_reap(&child);
    assert_eq!(s.acquire(), Err(OwnerDied { pid }));
    // The other unit was given back by the recovery.
    assert_eq!(s.acquire_timeout(WATCHDOG), Ok(()));
    assert_eq!(s.value(), 0);
    s.release().unwrap();
    s.release().unwrap();
    assert_eq!(s.value(), 2);
    assert!(s.release().is_err(), "past the bound");
    assert_eq!((s.value(), s.max_value()), (2, 2));
}

/// The holder is killed and its pid handed to another process (`sleep`)
/// before anyone waits: the semaphore still sees its holder dead (identity
/// is pid plus start time) and the unit comes back.
fn semaphore_holder_pid_reused_still_recovered() {
    let s = Semaphore::new(1).unwrap();
    let cells = Cells::leaked();
    let child = {
        let s = s.clone();
        holder(cells, move || s.acquire().unwrap())
    };
    let pid = kill_and_reap(&child);
    // Start times are kept in clock ticks (10 ms at 100 Hz): a process
    // given the pid within the same tick as its dead owner started would
    // look like it. `ns_last_pid` makes reuse immediate; the kernel's own
    // wrap-around through `pid_max` pids takes far longer than a tick.
    std::thread::sleep(Duration::from_millis(50));
    let sleeper = reuse_pid(pid).expect("could not hand the victim's pid to a new process");
    assert_eq!(s.acquire(), Err(OwnerDied { pid }));
    kill9(sleeper);
    wait_dead(sleeper, WATCHDOG);
}

/// Starts `sleep 20` with pid `pid` (see `multiproc_tests::spawn_with_pid`);
/// returns its pid. Reaped by nobody until the test ends; killed by the
/// caller.
fn reuse_pid(pid: u32) -> Option<u32> {
    let c = spawn_with_pid(pid)?;
    std::mem::forget(c);
    Some(pid)
}

/// A barrier of 3: one party registers and is killed before it arrives;
/// the other two (one a child, one the parent) wait with no timeout and
/// both get `PartyDied` naming it.
fn barrier_party_killed_before_arriving() {
    let b = Barrier::new(3).unwrap();
    let cells = Cells::leaked();
    let victim = {
        let b = b.clone();
        holder(cells, move || assert!(b.register()))
    };
    let vpid = victim.pid();
    let other = {
        let b = b.clone();
        start(move || {
            let r = b.wait();
            let cell = cells.get(1);
            match r {
                Err(BarrierError::PartyDied { pid }) => {
                    cell.store(u64::from(pid), Ordering::Release)
                }
                other => panic!("{other:?}"),
            }
        })
    };
    // Let the other party arrive first (not needed for the outcome).
    let end = Instant::now() + WATCHDOG;
    while b.n_waiting() < 1 {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(kill_and_reap(&victim), vpid);
    assert_eq!(b.wait(), Err(BarrierError::PartyDied { pid: vpid }));
    join_ok(&other);
    assert_eq!(cells.get(1).load(Ordering::Acquire), u64::from(vpid));
    assert!(b.broken());
    // After a reset the barrier works again for the two left.
    b.reset();
    let b2 = b.clone();
    let h = start(move || {
        b2.wait().unwrap();
    });
    // Two parties of three now: a third one comes from a thread here.
    let b3 = b.clone();
    let t = std::thread::spawn(move || b3.wait().unwrap());
    b.wait().unwrap();
    t.join().unwrap();
    join_ok(&h);
}

// ---------------------------------------------------------------------------
// JoinableQueue and SimpleQueue across spawn and forkserver
// ---------------------------------------------------------------------------

/// Entry: receive 3 values from the `SimpleQueue` named in `args`, send
/// their sum back on the same queue + 1000.
fn entry_simple_by_name(args: &[u8]) -> i32 {
    let Ok(name) = std::str::from_utf8(args) else {
        return 10;
    };
    let Ok(q) = SimpleQueue::<u64>::open(name) else {
        return 11;
    };
    simple_child(&q)
}

fn entry_simple_by_token(args: &[u8]) -> i32 {
    let Ok(q) = SimpleQueue::<u64>::from_token(args) else {
        return 11;
    };
    if SimpleQueue::<u32>::from_token(args).is_ok() {
        return 12;
    }
    simple_child(&q)
}

fn simple_child(q: &SimpleQueue<u64>) -> i32 {
    let mut sum = 0;
    for _ in 0..3 {
        match q.get() {
            Ok(v) if v < 1000 => sum += v,
            _ => return 13,
        }
    }
    if q.put(1000 + sum).is_err() {
        return 14;
    }
    0
}

fn entry_joinable_by_name(args: &[u8]) -> i32 {
    let Ok(name) = std::str::from_utf8(args) else {
        return 10;
    };
    let Ok(q) = JoinableQueue::<u64>::open(name) else {
        return 11;
    };
    joinable_child(&q)
}

fn entry_joinable_by_token(args: &[u8]) -> i32 {
    let Ok(q) = JoinableQueue::<u64>::from_token(args) else {
        return 11;
    };
    if JoinableQueue::<u32>::from_token(args).is_ok() {
        return 12;
    }
    joinable_child(&q)
}

/// Takes 3 tasks, marking each done.
fn joinable_child(q: &JoinableQueue<u64>) -> i32 {
    for _ in 0..3 {
        if q.get().is_err() {
            return 13;
        }
        if q.task_done().is_err() {
            return 14;
        }
    }
    0
}

fn simple_queue_across(method: StartMethod) {
    for by_token in [false, true] {
        let q = SimpleQueue::<u64>::named(&unique(&format!("sq{}{by_token}", method.as_str())), 8)
            .unwrap();
        let child = if by_token {
            Process::entry("simple_token", q.to_token().unwrap())
        } else {
            Process::entry("simple_name", q.name().unwrap().as_bytes().to_vec())
        }
        .start_method(method)
        .start()
        .unwrap();
        for v in [1, 2, 3] {
            q.put(v).unwrap();
        }
        join_ok(&child);
        assert_eq!(q.get(), Ok(1006));
    }
}

fn joinable_queue_across(method: StartMethod) {
    for by_token in [false, true] {
        let q =
            JoinableQueue::<u64>::named(&unique(&format!("jq{}{by_token}", method.as_str())), 8)
                .unwrap();
        let child = if by_token {
            Process::entry("joinable_token", q.to_token().unwrap())
        } else {
            Process::entry("joinable_name", q.name().unwrap().as_bytes().to_vec())
        }
        .start_method(method)
        .start()
        .unwrap();
        for v in [1, 2, 3] {
            q.put(v).unwrap();
        }
        // Every task done by the child: join returns.
        assert_eq!(q.join_timeout(WATCHDOG), Ok(()), "tasks left unfinished");
        join_ok(&child);
    }
}

fn simple_queue_spawn() {
    simple_queue_across(StartMethod::Spawn);
}

fn simple_queue_forkserver() {
    simple_queue_across(StartMethod::Forkserver);
}

fn joinable_queue_spawn() {
    joinable_queue_across(StartMethod::Spawn);
}

fn joinable_queue_forkserver() {
    joinable_queue_across(StartMethod::Forkserver);
}

fn main() {
    multiproc::register_entry("simple_name", entry_simple_by_name).unwrap();
    multiproc::register_entry("simple_token", entry_simple_by_token).unwrap();
    multiproc::register_entry("joinable_name", entry_joinable_by_name).unwrap();
    multiproc::register_entry("joinable_token", entry_joinable_by_token).unwrap();
    multiproc::init();
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            semaphore_holder_killed_next_acquire_learns,
            bounded_semaphore_keeps_bound_after_recovery,
            semaphore_holder_pid_reused_still_recovered,
            barrier_party_killed_before_arriving,
            simple_queue_spawn,
            simple_queue_forkserver,
            joinable_queue_spawn,
            joinable_queue_forkserver,
        ],
        WATCHDOG,
    );
}
