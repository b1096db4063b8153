//! `multiproc::sync` between real processes: counters kept exact by
//! `Lock`, `Value`, `Mutex` and `Array`; `RLock` recursion and exclusion;
//! `Condition` ping-pong; a `Semaphore` bound; `Event`; `Barrier`
//! generations; a holder killed with `SIGKILL` and a panicking holder
//! (poison seen, lock usable again); named segments opened across fork and
//! spawn; a segment opened as the wrong type in another process; a
//! timeout on every blocking call.
//!
//! A custom harness (`harness = false`): the spawn test re-runs this
//! binary, whose `main` registers the entry points and calls
//! `multiproc::init()` first. Every test runs under a watchdog.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::sync::{
    AcquireTimeoutError, Array, AtomicValue, Barrier, BarrierError, BoundedSemaphore, Condition,
    Event, HandleKind, Lock, LockTimeoutError, Mutex, PoisonCause, RLock, Semaphore,
    SemaphoreError, SyncError, TimedOut, TryLockError, Value,
};
use multiproc::{Process, StartMethod};
use multiproc_tests::process_support::{run_tests, Test};
use multiproc_tests::Cells;

const WATCHDOG: Duration = Duration::from_secs(60);
/// A timeout that must run out (the holder is alive and keeps holding).
const SHORT: Duration = Duration::from_millis(30);

fn join_ok(p: &Process) {
    let st = p.join_timeout(WATCHDOG).expect("join (child hung?)");
    assert!(st.success(), "child failed: {st:?}");
}

fn start(f: impl FnOnce() + Send + 'static) -> Process {
    Process::new(f).start().expect("fork")
}

fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "/mp-synctest-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------

/// Two processes and the parent increment through Lock (guarding a plain
/// read-modify-write in a shared cell), Value, Mutex and Array: no update
/// is lost.
fn counters_exact_across_processes() {
    const PER: u64 = 3000;
    let cells = Cells::new();
    let lock = Lock::new().unwrap();
    let value = Value::new(0u64).unwrap();
    let mutex = Mutex::new([0u64; 2]).unwrap();
    let array = Array::new(3, 0u64).unwrap();
    let work = {
        let (lock, value, mutex, array) =
            (lock.clone(), value.clone(), mutex.clone(), array.clone());
        let cell = cells.get(0) as *const AtomicU64 as usize;
        move || {
            // SAFETY: the mapping is inherited and outlives every worker.
            let cell = unsafe { &*(cell as *const AtomicU64) };
            for i in 0..PER {
                {
                    let _g = lock.lock().unwrap();
                    // Non-atomic read-modify-write, spread out: a broken
                    // lock loses updates.
                    let v = cell.load(Ordering::Relaxed);
                    if i % 64 == 0 {
                        std::thread::yield_now();
                    }
                    cell.store(v + 1, Ordering::Relaxed);
                }
                *value.lock().unwrap() += 1;
                value.update(|v| *v += 1).unwrap();
                {
                    let mut g = mutex.lock().unwrap();
                    g[0] += 1;
                    g[1] += 2;
                }
                array.lock().unwrap()[(i % 3) as usize] += 1;
            }
        }
    };
    let kids: Vec<Process> = (0..2).map(|_| start(work.clone())).collect();
    work();
    for k in &kids {
        join_ok(k);
    }
    assert_eq!(cells.get(0).load(Ordering::Relaxed), 3 * PER);
    assert_eq!(value.get().unwrap(), 6 * PER);
    assert_eq!(*mutex.lock().unwrap(), [3 * PER, 6 * PER]);
    assert_eq!(array.to_vec().unwrap(), [PER, PER, PER]);
    assert!(!lock.is_locked() && !lock.is_poisoned());
}

/// Recursion within a thread; exclusion of other threads and of another
/// process; release only at the outermost guard.
fn rlock_recursion_and_exclusion() {
    let r = RLock::new().unwrap();
    {
        let a = r.lock().unwrap();
        let b = r.try_lock().unwrap();
        let c = r.lock_timeout(Duration::ZERO).unwrap();
        assert_eq!(r.depth(), 3);
        assert!(r.is_owned());
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(r.depth(), 0);
                assert!(matches!(r.try_lock(), Err(TryLockError::WouldBlock)));
                assert!(matches!(
                    r.lock_timeout(SHORT),
                    Err(LockTimeoutError::TimedOut)
                ));
            });
        });
        drop(c);
        drop(b);
        assert!(r.is_locked());
        drop(a);
    }
    assert!(!r.is_locked());

    // A child holds it (twice) until told to let go.
    let cells = Cells::new();
    let cp = cells.get(0) as *const AtomicU64 as usize;
    let child = {
        let r = r.clone();
        start(move || {
            // SAFETY: inherited mapping, alive for the child's life.
            let cells = unsafe { &*(cp as *const AtomicU64) };
            let _a = r.lock().unwrap();
            let _b = r.lock().unwrap();
            assert_eq!(r.depth(), 2);
            cells.store(1, Ordering::Release);
            while cells.load(Ordering::Acquire) < 2 {
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    cells.wait_for(0, 1);
    assert!(r.is_locked() && !r.is_owned());
    assert!(matches!(r.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(matches!(
        r.lock_timeout(SHORT),
        Err(LockTimeoutError::TimedOut)
    ));
    cells.get(0).store(2, Ordering::Release);
    let g = r.lock_timeout(WATCHDOG).unwrap();
    assert_eq!(r.depth(), 1);
    drop(g);
    join_ok(&child);
}

/// An RLock holder killed with SIGKILL: the next locker sees OwnerDied,
/// and the lock works again.
fn rlock_holder_killed() {
    let r = RLock::new().unwrap();
    let cells = Cells::new();
    let cp = cells.get(0) as *const AtomicU64 as usize;
    let child = {
        let r = r.clone();
        start(move || {
            // SAFETY: inherited mapping.
            let cell = unsafe { &*(cp as *const AtomicU64) };
            let _a = r.lock().unwrap();
            let _b = r.lock().unwrap();
            cell.store(1, Ordering::Release);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    cells.wait_for(0, 1);
    let pid = child.pid();
    child.kill().unwrap();
    let _ = child.join_timeout(WATCHDOG).unwrap();
    let e = r.lock_timeout(WATCHDOG).unwrap_err();
    match e {
        LockTimeoutError::Poisoned(p) => {
            assert_eq!(p.cause(), PoisonCause::OwnerDied { pid });
            let g = p.into_inner();
            assert_eq!(r.depth(), 1);
            r.clear_poison();
            drop(g);
        }
        LockTimeoutError::TimedOut => panic!("dead holder not taken over"),
    }
    assert!(!r.is_locked());
    let _g = r.lock().unwrap();
    let _h = r.lock().unwrap();
    assert_eq!(r.depth(), 2);
}

/// Parent and child take turns through a Condition<u64>: the parent moves
/// even to odd, the child odd to even.
fn condition_ping_pong() {
    const ROUNDS: u64 = 200;
    let c = Condition::new(0u64).unwrap();
    let child = {
        let c = c.clone();
        start(move || {
            for i in 0..ROUNDS {
                let g = c.lock().unwrap();
                let (mut g, timed_out) = c
                    .wait_for_timeout(g, WATCHDOG, |v| *v == 2 * i + 1)
                    .unwrap();
                assert!(!timed_out.timed_out(), "child starved at round {i}");
                *g += 1;
                drop(g);
                c.notify_all();
            }
        })
    };
    for i in 0..ROUNDS {
        let mut g = c.lock().unwrap();
        // Plain `wait` in a loop on this side, `wait_for` on the other.
        let end = Instant::now() + WATCHDOG;
        while *g != 2 * i {
            assert!(Instant::now() < end, "parent starved at round {i}");
            let (g2, _) = c.wait_timeout(g, Duration::from_millis(100)).unwrap();
            g = g2;
        }
        *g += 1;
        drop(g);
        c.notify();
    }
    let g = c.lock().unwrap();
    let g = c.wait_for(g, |v| *v == 2 * ROUNDS).unwrap();
    assert_eq!(*g, 2 * ROUNDS);
    drop(g);
    join_ok(&child);
}

/// The notifier is SIGKILLed after changing the state under the lock and
/// before notifying (holding the lock): the parent, in a plain `wait` with
/// no timeout, still wakes, and relocks to find the lock poisoned by the
/// dead owner, with the new state.
fn condition_notifier_killed_before_notify() {
    let c = Condition::new(0u64).unwrap();
    let cells = Cells::new();
    let cp = cells.get(0) as *const AtomicU64 as usize;
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let c = c.clone();
        std::thread::spawn(move || {
            let g = c.lock().unwrap();
            tx.send(None).unwrap();
            // No timeout: only the bounded re-check can end this wait.
            let r = c.wait(g);
            let got = match r {
                Ok(g) => (false, *g),
                Err(p) => (true, *p.into_inner()),
            };
            tx.send(Some(got)).unwrap();
        })
    };
    // The waiter holds the lock: the child's lock waits for its `wait`.
    assert_eq!(rx.recv_timeout(WATCHDOG), Ok(None));
    let child = {
        let c = c.clone();
        let b = Process::new::<_, ()>(move || {
            // SAFETY: inherited mapping.
            let cell = unsafe { &*(cp as *const AtomicU64) };
            let mut g = c.lock().unwrap();
            *g = 1;
            cell.store(1, Ordering::Release);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        // SAFETY: the waiter thread sleeps in the process-shared condition
        // (it sent its message before) and holds no lock of this process;
        // the child takes only the process-shared lock, made for this.
        unsafe { b.allow_fork_with_threads() }
            .start()
            .expect("fork")
    };
    cells.wait_for(0, 1);
    let pid = child.pid();
    child.kill().unwrap();
    let _ = child.join_timeout(WATCHDOG).unwrap();
    let (poisoned, v) = rx
        .recv_timeout(WATCHDOG)
        .expect("the waiter slept on after the notifier died")
        .expect("one report");
    assert!(poisoned, "the dead notifier ({pid}) held the lock");
    assert_eq!(v, 1);
    waiter.join().unwrap();
}

/// Semaphore(2) among 3 processes: never more than 2 inside at once, and
/// the bound is reached.
fn semaphore_bound_three_processes() {
    const PER: u64 = 300;
    let s = Semaphore::new(2).unwrap();
    let cells = Cells::new();
    let cp = cells.as_ptr() as usize;
    let kids: Vec<Process> = (0..3)
        .map(|_| {
            let s = s.clone();
            start(move || {
                // SAFETY: inherited mapping; cells 0 and 1 are AtomicU64.
                let inside = unsafe { &*(cp as *const AtomicU64) };
                // SAFETY: as above.
                let max = unsafe { &*((cp + 8) as *const AtomicU64) };
                for _ in 0..PER {
                    s.acquire_timeout(WATCHDOG).expect("semaphore starved");
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_micros(20));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    s.release().unwrap();
                }
            })
        })
        .collect();
    for k in &kids {
        join_ok(k);
    }
    let max = cells.get(1).load(Ordering::SeqCst);
    assert!(max <= 2, "{max} inside a Semaphore(2)");
    assert_eq!(s.value(), 2);
    // Held by the parent: a timed acquire runs out.
    s.acquire().unwrap();
    assert!(s.try_acquire());
    assert_eq!(s.acquire_timeout(SHORT), Err(AcquireTimeoutError::TimedOut));
    s.release_n(2).unwrap();

    let b = BoundedSemaphore::new(1).unwrap();
    assert_eq!(b.release(), Err(SemaphoreError::Overflow));
    assert!(b.try_acquire());
    assert_eq!(b.acquire_timeout(SHORT), Err(AcquireTimeoutError::TimedOut));
    b.release().unwrap();
    assert_eq!((b.value(), b.max_value()), (1, 1));
}

/// A child sets the event the parent waits on.
fn event_set_from_child() {
    let e = Event::new().unwrap();
    assert_eq!(e.wait_timeout(SHORT), Err(TimedOut));
    let child = {
        let e = e.clone();
        start(move || {
            std::thread::sleep(Duration::from_millis(20));
            e.set();
        })
    };
    assert_eq!(e.wait_timeout(WATCHDOG), Ok(()));
    assert!(e.is_set());
    join_ok(&child);
    e.wait();
    e.clear();
    assert!(!e.is_set() && e.wait_timeout(Duration::ZERO).is_err());
}

/// A barrier of 3 processes for several generations: nobody leaves a
/// generation before all arrived; one leader per generation.
fn barrier_three_processes_generations() {
    const GENS: usize = 20;
    let b = Barrier::new(3).unwrap();
    let cells = Cells::new();
    let cp = cells.as_ptr() as usize;
    let run = {
        let b = b.clone();
        move || {
            // SAFETY: inherited mapping of 512 cells; indices below 64.
            let cell = |i: usize| unsafe { &*((cp + 8 * i) as *const AtomicU64) };
            for g in 0..GENS {
                cell(g).fetch_add(1, Ordering::SeqCst);
                let r = b.wait_timeout(WATCHDOG).unwrap();
                assert_eq!(
                    cell(g).load(Ordering::SeqCst),
                    3,
                    "left generation {g} early"
                );
                if r.is_leader() {
                    cell(32 + g).fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    };
    let kids: Vec<Process> = (0..2).map(|_| start(run.clone())).collect();
    run();
    for k in &kids {
        join_ok(k);
    }
    for g in 0..GENS {
        assert_eq!(
            cells.get(32 + g).load(Ordering::SeqCst),
            1,
            "leaders of {g}"
        );
    }
    assert_eq!((b.parties(), b.n_waiting(), b.broken()), (3, 0, false));

    // A timed-out wait breaks it; abort and reset.
    assert_eq!(b.wait_timeout(SHORT), Err(BarrierError::TimedOut));
    assert!(b.broken());
    assert_eq!(b.wait(), Err(BarrierError::Broken));
    b.reset();
    assert!(!b.broken());
    b.abort();
    assert_eq!(b.wait_timeout(SHORT), Err(BarrierError::Broken));
    b.reset();
}

/// A child holding a Value's lock is killed mid-update: the parent sees
/// OwnerDied, repairs, clears, and the lock works again.
fn lock_holder_sigkilled() {
    let v = Value::new(0u64).unwrap();
    let lock = Lock::new().unwrap();
    let cells = Cells::new();
    let cp = cells.get(0) as *const AtomicU64 as usize;
    let child = {
        let (v, lock) = (v.clone(), lock.clone());
        start(move || {
            // SAFETY: inherited mapping.
            let cell = unsafe { &*(cp as *const AtomicU64) };
            let _l = lock.lock().unwrap();
            let mut g = v.lock().unwrap();
            *g = 0xdead; // half-done work
            cell.store(1, Ordering::Release);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    cells.wait_for(0, 1);
    let pid = child.pid();
    assert!(matches!(v.try_lock(), Err(TryLockError::WouldBlock)));
    child.kill().unwrap();
    let _ = child.join_timeout(WATCHDOG).unwrap();

    let p = v.lock().unwrap_err();
    assert_eq!(p.cause(), PoisonCause::OwnerDied { pid });
    let mut g = p.into_inner();
    assert_eq!(*g, 0xdead);
    *g = 7;
    v.clear_poison();
    drop(g);
    assert_eq!(v.get().unwrap(), 7);
    assert!(!v.is_poisoned());

    match lock.lock_timeout(WATCHDOG) {
        Err(LockTimeoutError::Poisoned(p)) => {
            assert_eq!(p.cause(), PoisonCause::OwnerDied { pid });
            assert_eq!(lock.poison_cause(), Some(PoisonCause::OwnerDied { pid }));
            lock.clear_poison();
        }
        other => panic!("expected poison, got {other:?}"),
    }
    assert!(!lock.is_locked());
    drop(lock.acquire().unwrap());
    assert!(lock.try_lock().is_ok());
}

/// A child panics holding guards: the locks are poisoned with Panicked.
fn panicking_child_poisons() {
    let m = Mutex::new(1u32).unwrap();
    let a = Array::new(2, 0u8).unwrap();
    let r = RLock::new().unwrap();
    let child = {
        let (m, a, r) = (m.clone(), a.clone(), r.clone());
        start(move || {
            let _r = r.lock().unwrap();
            let _a = a.lock().unwrap();
            let mut g = m.lock().unwrap();
            *g = 2;
            panic!("on purpose, holding three guards");
        })
    };
    let joined = child.join_timeout(WATCHDOG);
    assert!(
        matches!(joined, Err(multiproc::JoinError::Panicked { .. })),
        "{joined:?}"
    );
    let p = m.lock().unwrap_err();
    assert_eq!(p.cause(), PoisonCause::Panicked);
    assert_eq!(**p.get_ref(), 2);
    drop(p);
    m.clear_poison();
    assert_eq!(*m.lock().unwrap(), 2);
    assert!(a.is_poisoned());
    assert!(matches!(
        a.get(0),
        Err(multiproc::sync::ArrayError::Poisoned(_))
    ));
    a.clear_poison();
    assert_eq!(a.to_vec().unwrap(), [0, 0]);
    assert!(r.is_poisoned() && !r.is_locked());
    r.clear_poison();
    drop(r.lock().unwrap());

    // The same within this process: a panicking thread poisons.
    let v = Value::new(0u8).unwrap();
    let v2 = v.clone();
    let res = std::thread::spawn(move || v2.update(|_| panic!("inside update"))).join();
    assert!(res.is_err());
    assert_eq!(v.lock().unwrap_err().cause(), PoisonCause::Panicked);
}

/// Named segments: a forked child and a spawned process open them by name;
/// the creator unlinks the name on drop.
fn named_open_across_fork_and_spawn() {
    let vname = unique("v");
    let v = Value::named(&vname, 0u64).unwrap();
    assert_eq!(v.name(), Some(vname.as_str()));
    let ename = unique("e");
    let e = Event::named(&ename).unwrap();
    let fork_child = {
        let (vname, ename) = (vname.clone(), ename.clone());
        start(move || {
            let v = Value::<u64>::open(&vname).unwrap();
            v.update(|x| *x += 10).unwrap();
            Event::open(&ename).unwrap().set();
            // Wrong type or kind is refused.
            assert!(matches!(
                Value::<u32>::open(&vname),
                Err(SyncError::WrongType { .. })
            ));
            assert!(matches!(
                Semaphore::open(&ename),
                Err(SyncError::WrongType { .. })
            ));
        })
    };
    assert_eq!(e.wait_timeout(WATCHDOG), Ok(()));
    join_ok(&fork_child);
    let spawned = Process::entry("open_value", vname.as_bytes().to_vec())
        .start_method(StartMethod::Spawn)
        .start()
        .unwrap();
    join_ok(&spawned);
    assert_eq!(v.get().unwrap(), 11);

    // Every wrapper by name.
    let n = unique("all");
    let names: Vec<String> = (0..10).map(|i| format!("{n}-{i}")).collect();
    let lock = Lock::named(&names[0]).unwrap();
    let rl = RLock::named(&names[1]).unwrap();
    let c = Condition::named(&names[2], 5u8).unwrap();
    let s = Semaphore::named(&names[3], 1).unwrap();
    let bs = BoundedSemaphore::named(&names[4], 1).unwrap();
    let b = Barrier::named(&names[5], 2).unwrap();
    let m = Mutex::named(&names[6], 3i32).unwrap();
    let a = Array::named(&names[7], 4, 1u32).unwrap();
    let av = AtomicValue::named(&names[8], 9u16).unwrap();
    let child = {
        let names = names.clone();
        start(move || {
            drop(Lock::open(&names[0]).unwrap().lock().unwrap());
            drop(RLock::open(&names[1]).unwrap().lock().unwrap());
            assert_eq!(
                *Condition::<u8>::open(&names[2]).unwrap().lock().unwrap(),
                5
            );
            assert!(Semaphore::open(&names[3]).unwrap().try_acquire());
            assert!(matches!(
                Semaphore::open(&names[4]),
                Err(SyncError::WrongType { .. })
            ));
            assert!(BoundedSemaphore::open(&names[4]).unwrap().try_acquire());
            Barrier::open(&names[5])
                .unwrap()
                .wait_timeout(WATCHDOG)
                .unwrap();
            *Mutex::<i32>::open(&names[6]).unwrap().lock().unwrap() += 1;
            Array::<u32>::open(&names[7]).unwrap().set(3, 8).unwrap();
            AtomicValue::<u16>::open(&names[8]).unwrap().fetch_add(1);
        })
    };
    b.wait_timeout(WATCHDOG).unwrap();
    join_ok(&child);
    assert!(!lock.is_locked() && !rl.is_locked() && !c.is_poisoned());
    assert_eq!((s.value(), bs.value()), (0, 0));
    assert_eq!(*m.lock().unwrap(), 4);
    assert_eq!(a.to_vec().unwrap(), [1, 1, 1, 8]);
    assert_eq!(av.load(), 10);

    // Clones keep the segment; the last one (the creator's) unlinks it.
    let v2 = v.clone();
    drop(v);
    assert!(Value::<u64>::open(&vname).is_ok());
    drop(v2);
    assert!(matches!(Value::<u64>::open(&vname), Err(SyncError::Shm(_))));
    assert!(matches!(Lock::named(&ename), Err(SyncError::Shm(_))));
}

/// A handle type: how to make it under a name and open it by name.
struct Case {
    what: &'static str,
    kind: HandleKind,
    make: fn(&str) -> Box<dyn std::any::Any>,
    open: fn(&str) -> Result<(), SyncError>,
}

macro_rules! case {
    ($what:literal, $kind:ident, |$n:ident| $make:expr, $open:expr) => {
        Case {
            what: $what,
            kind: HandleKind::$kind,
            make: |$n| Box::new($make.unwrap()),
            open: |$n| $open($n).map(drop),
        }
    };
}

/// Every handle type, and some generic ones over two element types.
fn cases() -> Vec<Case> {
    vec![
        case!("Lock", Lock, |n| Lock::named(n), Lock::open),
        case!("RLock", RLock, |n| RLock::named(n), RLock::open),
        case!(
            "Condition<u8>",
            Condition,
            |n| Condition::named(n, 0u8),
            Condition::<u8>::open
        ),
        case!(
            "Mutex<u32>",
            Mutex,
            |n| Mutex::named(n, 0u32),
            Mutex::<u32>::open
        ),
        case!(
            "Mutex<i32>",
            Mutex,
            |n| Mutex::named(n, 0i32),
            Mutex::<i32>::open
        ),
        case!(
            "Semaphore",
            Semaphore,
            |n| Semaphore::named(n, 1),
            Semaphore::open
        ),
        case!(
            "BoundedSemaphore",
            BoundedSemaphore,
            |n| BoundedSemaphore::named(n, 1),
            BoundedSemaphore::open
        ),
        case!("Event", Event, |n| Event::named(n), Event::open),
        case!("Barrier", Barrier, |n| Barrier::named(n, 2), Barrier::open),
        case!(
            "Value<u32>",
            Value,
            |n| Value::named(n, 0u32),
            Value::<u32>::open
        ),
        case!(
            "Value<u64>",
            Value,
            |n| Value::named(n, 0u64),
            Value::<u64>::open
        ),
        case!(
            "AtomicValue<u32>",
            AtomicValue,
            |n| AtomicValue::named(n, 0u32),
            AtomicValue::<u32>::open
        ),
        case!(
            "Array<u32>",
            Array,
            |n| Array::named(n, 2, 0u32),
            Array::<u32>::open
        ),
    ]
}

/// The parent makes one named segment per handle type; a forked child
/// opens each as every type: the right one works, every other is refused
/// with `WrongType` naming what the child asked for and what the parent
/// made.
fn wrong_type_refused_in_another_process() {
    let made = cases();
    let base = unique("types");
    let names: Vec<String> = (0..made.len()).map(|i| format!("{base}-{i}")).collect();
    let _kept: Vec<_> = made.iter().zip(&names).map(|(c, n)| (c.make)(n)).collect();
    let child = {
        let names = names.clone();
        start(move || {
            let cases = cases();
            for (i, made) in cases.iter().enumerate() {
                for (j, opener) in cases.iter().enumerate() {
                    let r = (opener.open)(&names[i]);
                    if i == j {
                        assert!(r.is_ok(), "{} as itself: {r:?}", made.what);
                        continue;
                    }
                    let Err(SyncError::WrongType { expected, found }) = r else {
                        panic!("{} as {}: {r:?}", made.what, opener.what);
                    };
                    assert_eq!(expected.handle, Some(opener.kind), "{}", opener.what);
                    assert_eq!(found.handle, Some(made.kind), "{}", made.what);
                    assert_ne!(expected, found);
                }
            }
        })
    };
    join_ok(&child);
}

fn entry_open_value(args: &[u8]) -> i32 {
    let Ok(name) = std::str::from_utf8(args) else {
        return 10;
    };
    let Ok(v) = Value::<u64>::open(name) else {
        return 11;
    };
    match v.update(|x| *x += 1) {
        Ok(()) => 0,
        Err(_) => 12,
    }
}

/// Every blocking call gives up after its timeout while a live process
/// holds the resource; argument errors are typed.
fn timeouts_and_errors() {
    let lock = Lock::new().unwrap();
    let v = Value::new(0u8).unwrap();
    let a = Array::new(2, 0u8).unwrap();
    let m = Mutex::new(0u8).unwrap();
    let c = Condition::new(0u8).unwrap();
    let cells = Cells::new();
    let cp = cells.get(0) as *const AtomicU64 as usize;
    let child = {
        let (lock, v, a, m, c) = (lock.clone(), v.clone(), a.clone(), m.clone(), c.clone());
        start(move || {
            // SAFETY: inherited mapping.
            let cell = unsafe { &*(cp as *const AtomicU64) };
            let _g = (lock.lock(), v.lock(), a.lock(), m.lock(), c.lock());
            cell.store(1, Ordering::Release);
            while cell.load(Ordering::Acquire) < 2 {
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    cells.wait_for(0, 1);
    assert!(matches!(
        lock.lock_timeout(SHORT),
        Err(LockTimeoutError::TimedOut)
    ));
    assert!(matches!(
        v.lock_timeout(SHORT),
        Err(LockTimeoutError::TimedOut)
    ));
    assert!(matches!(
        a.lock_timeout(SHORT),
        Err(LockTimeoutError::TimedOut)
    ));
    assert!(matches!(
        m.lock_timeout(SHORT),
        Err(LockTimeoutError::TimedOut)
    ));
    assert!(matches!(
        c.lock_timeout(SHORT),
        Err(LockTimeoutError::TimedOut)
    ));
    assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(matches!(v.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(matches!(a.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(matches!(c.try_lock(), Err(TryLockError::WouldBlock)));
    cells.get(0).store(2, Ordering::Release);
    join_ok(&child);

    // Waits that nobody ends.
    let g = c.lock().unwrap();
    let (g, r) = c.wait_timeout(g, SHORT).unwrap();
    assert!(r.timed_out());
    let (_g, r) = c.wait_for_timeout(g, SHORT, |x| *x == 1).unwrap();
    assert!(r.timed_out());

    assert!(matches!(Barrier::new(0), Err(SyncError::Init(_))));
    assert!(matches!(
        AtomicValue::new([0u8; 3]),
        Err(SyncError::Init(_))
    ));
    assert!(matches!(Semaphore::new(u32::MAX), Err(SyncError::Init(_))));
    assert!(matches!(
        Lock::open("/mp-synctest-none"),
        Err(SyncError::Shm(_))
    ));
    assert!(matches!(Lock::named("a/b"), Err(SyncError::Shm(_))));
    assert!(a.get(2).is_err() && a.set(5, 1).is_err());
    assert!(a.copy_from_slice(&[1]).is_err());
    let mut out = [0u8; 2];
    a.copy_to_slice(&mut out).unwrap();
    assert!(std::error::Error::source(&Barrier::new(0).unwrap_err()).is_some());
}

fn main() {
    multiproc::register_entry("open_value", entry_open_value).unwrap();
    multiproc::init();
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            counters_exact_across_processes,
            rlock_recursion_and_exclusion,
            rlock_holder_killed,
            condition_ping_pong,
            condition_notifier_killed_before_notify,
            semaphore_bound_three_processes,
            event_set_from_child,
            barrier_three_processes_generations,
            lock_holder_sigkilled,
            panicking_child_poisons,
            named_open_across_fork_and_spawn,
            wrong_type_refused_in_another_process,
            timeouts_and_errors,
        ],
        WATCHDOG,
    );
}
