//! The process pool across real processes: results exactly once, panics
//! and killed workers failing only their tasks, every start method, and
//! nothing left behind.
//!
//! Own harness (`harness = false`): the pool forks from the main thread,
//! and spawned workers re-run this binary, whose `main` calls
//! `multiproc::init()` first. Task functions reach the test's shared cells
//! through a `static` set before the pool forks its workers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use multiproc::pool::{LostTasks, Pool, PoolError, TaskError};
use multiproc::process::ProcessError;
use multiproc::StartMethod;
use multiproc_tests::process_support::{run_tests, Test};
use multiproc_tests::{fork, Cells};

const WATCHDOG: Duration = Duration::from_secs(180);

/// Shared cells, reachable from task functions in fork workers.
static CELLS: OnceLock<&'static Cells> = OnceLock::new();

fn cells() -> &'static Cells {
    CELLS.get_or_init(Cells::leaked)
}

fn square(x: u64) -> u64 {
    x * x
}

fn inc(x: u64) -> u64 {
    x + 1
}

fn pid_of_worker(_: u64) -> u32 {
    std::process::id()
}

/// Cell 0: the pid running item 0, which then sleeps until killed.
fn item_zero_hangs(x: u64) -> u64 {
    if x == 0 {
        cells()
            .get(0)
            .store(u64::from(std::process::id()), Ordering::Release);
        std::thread::sleep(Duration::from_secs(600));
    }
    x * 3
}

/// Item 0 blocks until cell 2 is set.
fn zero_waits_for_cell(x: u64) -> u64 {
    if x == 0 {
        while cells().get(2).load(Ordering::Acquire) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    x
}

/// `(index, a function of it)`: lets unordered results be checked.
fn tagged(x: u64) -> (u64, u64) {
    (x, x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
}

/// As [`tagged`], after a few microseconds of work, so that a kill lands
/// in the middle of a chunk.
fn tagged_busy(x: u64) -> (u64, u64) {
    let mut h = x;
    for _ in 0..300 {
        h = std::hint::black_box(h.wrapping_mul(31).rotate_left(3));
    }
    std::hint::black_box(h);
    tagged(x)
}

fn sleepy(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn no_children_left() -> bool {
    let mut status = 0;
    // SAFETY: waitpid with a valid out-pointer; WNOHANG never blocks.
    let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z" | "X") | None)
        }
        Err(_) => false,
    }
}

fn kill9(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

// ---------------------------------------------------------------------------

fn map_of_numbers_and_strings() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(
        pool.map(square, 0..10u64).unwrap(),
        (0..10u64).map(|x| x * x).collect::<Vec<_>>()
    );
    let words: Vec<String> = vec!["a".into(), "bb".into(), "".into()];
    assert_eq!(pool.map(|s: String| s.len(), words).unwrap(), vec![1, 2, 0]);
    let vecs = pool
        .map(
            |v: Vec<f64>| v.iter().sum::<f64>(),
            vec![vec![1.0, 2.5], vec![]],
        )
        .unwrap();
    assert_eq!(vecs, vec![3.5, 0.0]);
    assert!(pool.map(square, Vec::<u64>::new()).unwrap().is_empty());
    assert_eq!(
        pool.starmap(
            |a: u64, b: String| format!("{a}{b}"),
            vec![(1, "x".to_string())]
        )
        .unwrap(),
        vec!["1x".to_string()]
    );
    let arrays = pool
        .map(
            |a: multiproc::Plain<[f32; 256]>| a.0.iter().sum::<f32>(),
            vec![
                multiproc::Plain([0.5f32; 256]),
                multiproc::Plain([1.0; 256]),
            ],
        )
        .unwrap();
    assert_eq!(arrays, vec![128.0, 256.0]);
    assert_eq!(
        pool.starmap3(|a: u8, b: u8, c: u8| a + b + c, vec![(1, 2, 3), (4, 5, 6)])
            .unwrap(),
        vec![6, 15]
    );
}

fn hundreds_of_thousands_of_tasks_exactly_once() {
    let pool = Pool::new(2).unwrap();
    const N: u64 = 300_000;
    for chunks in [Some(1), None, Some(1000)] {
        let out = match chunks {
            Some(c) => pool.chunksize(c).map(tagged, 0..N).unwrap(),
            None => pool.map(tagged, 0..N).unwrap(),
        };
        assert_eq!(out.len() as u64, N);
        for (i, r) in out.iter().enumerate() {
            assert_eq!(*r, tagged(i as u64), "chunks {chunks:?}");
        }
    }
    let mut seen = vec![false; N as usize];
    for r in pool.chunksize(64).imap_unordered(tagged, 0..N).unwrap() {
        let (i, v) = r.unwrap();
        assert_eq!(v, tagged(i).1);
        assert!(!seen[i as usize], "item {i} twice");
        seen[i as usize] = true;
    }
    assert!(seen.iter().all(|&s| s));
    let ordered: Vec<u64> = pool
        .imap(inc, 0..10_000u64)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ordered, (1..=10_000).collect::<Vec<_>>());
}

fn panics_fail_only_their_item() {
    let pool = Pool::new(2).unwrap();
    let r = pool
        .chunksize(4)
        .map_results(
            |x: u64| {
                if x == 3 {
                    panic!("three is bad");
                }
                x + 1
            },
            0..6u64,
        )
        .unwrap();
    for (i, r) in r.iter().enumerate() {
        if i == 3 {
            match r {
                Err(TaskError::Panicked(m)) => assert!(m.contains("three is bad"), "{m}"),
                other => panic!("{other:?}"),
            }
        } else {
            assert_eq!(r.as_ref().unwrap(), &(i as u64 + 1));
        }
    }
    match pool.map(|x: u64| if x == 2 { panic!("no") } else { x }, 0..5u64) {
        Err(PoolError::Task {
            index: 2,
            error: TaskError::Panicked(_),
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
}

fn apply_async_and_map_async() {
    let pool = Pool::new(2).unwrap();
    let a = pool.apply_async(square, 12).unwrap();
    let m = pool.map_async(inc, 0..1000u64).unwrap();
    let mut slow = pool.apply_async(sleepy, 300).unwrap();
    assert!(matches!(
        slow.get_timeout(Duration::from_millis(1)),
        Err(PoolError::Timeout)
    ));
    assert_eq!(a.get().unwrap(), 144);
    m.wait();
    assert!(m.ready());
    assert_eq!(m.successful(), Some(true));
    assert_eq!(m.get().unwrap(), (1..=1000).collect::<Vec<u64>>());
    assert_eq!(slow.get_timeout(Duration::from_secs(60)).unwrap(), 300);
    // No waiter at all: the watcher thread moves a background job along.
    let t = Instant::now();
    let bg = pool.chunksize(1).map_async(inc, 0..20_000u64).unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    while !bg.wait_timeout(Duration::ZERO) {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("20k tasks with nobody waiting: {:?}", t.elapsed());
    assert_eq!(bg.get().unwrap().len(), 20_000);
}

fn imap_reads_its_input_lazily() {
    static READ: AtomicU64 = AtomicU64::new(0);
    let pool = Pool::builder().workers(2).imap_buffer(4).build().unwrap();
    let endless = (0u64..).inspect(|_| {
        READ.fetch_add(1, Ordering::Relaxed);
    });
    let firsts: Vec<u64> = pool
        .imap(inc, endless)
        .unwrap()
        .take(100)
        .map(Result::unwrap)
        .collect();
    assert_eq!(firsts, (1..=100).collect::<Vec<_>>());
    let read = READ.load(Ordering::Relaxed);
    // (workers + buffer) chunks of one item ahead of what was yielded.
    assert!(read <= 100 + 6, "read {read} items for 100 results");
    // chunked, unordered
    READ.store(0, Ordering::Relaxed);
    let endless = (0u64..).inspect(|_| {
        READ.fetch_add(1, Ordering::Relaxed);
    });
    let n = pool
        .chunksize(10)
        .imap_unordered(inc, endless)
        .unwrap()
        .take(1000)
        .count();
    assert_eq!(n, 1000);
    let read = READ.load(Ordering::Relaxed);
    assert!(read <= 1000 + 6 * 10, "read {read} items for 1000 results");
}

/// Chunks queued behind a long one are taken back for an idle worker:
/// every other item finishes while item 0 still runs (without that, the
/// items queued to item 0's worker would wait for it, and this would
/// hang until the watchdog).
fn queued_chunks_do_not_wait_behind_a_long_one() {
    let c = cells();
    let pool = Pool::new(2).unwrap();
    for round in 0..3 {
        c.get(2).store(0, Ordering::Release);
        let mut it = pool
            .chunksize(1)
            .imap_unordered(zero_waits_for_cell, 0..50u64)
            .unwrap();
        let others: HashSet<u64> = (&mut it).take(49).map(Result::unwrap).collect();
        assert_eq!(others, (1..50).collect::<HashSet<_>>(), "round {round}");
        c.get(2).store(1, Ordering::Release);
        assert_eq!(it.next(), Some(Ok(0)));
        assert_eq!(it.next(), None);
    }
}

/// The worker running item 0 is SIGKILLed: item 0 fails with
/// `WorkerLost`, every other item succeeds, the pool goes on with a new
/// worker.
fn killed_worker_fails_only_its_task() {
    let c = cells();
    let pool = Pool::new(2).unwrap();
    let before = pool.worker_pids();
    let mut latencies = Vec::new();
    for round in 0..5u64 {
        c.get(0).store(0, Ordering::Release);
        let (results, latency) = std::thread::scope(|s| {
            let h = s.spawn(|| {
                let r = pool.chunksize(1).map_results(item_zero_hangs, 0..200u64);
                (r, Instant::now())
            });
            c.wait_for(0, 1);
            let victim = c.get(0).load(Ordering::Acquire) as u32;
            let killed_at = Instant::now();
            kill9(victim);
            let (r, done_at) = h.join().unwrap();
            (r.unwrap(), done_at.duration_since(killed_at))
        });
        latencies.push(latency);
        for (i, r) in results.iter().enumerate() {
            if i == 0 {
                assert!(
                    matches!(
                        r,
                        Err(TaskError::WorkerLost {
                            exitcode: Some(-9),
                            ..
                        })
                    ),
                    "round {round}: {r:?}"
                );
            } else {
                assert_eq!(r.as_ref().unwrap(), &(i as u64 * 3));
            }
        }
        assert_eq!(pool.apply(square, 9).unwrap(), 81);
    }
    // The watcher starts the last replacement in the background: the map
    // and the apply above may finish on the other worker before it is up.
    let deadline = Instant::now() + WATCHDOG;
    let after = loop {
        let pids = pool.worker_pids();
        if pids.len() == 2 || Instant::now() > deadline {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(after.len(), 2, "the killed workers were replaced");
    assert_ne!(before, after, "killed workers were replaced");
    latencies.sort();
    eprintln!("kill to map's return: {latencies:?}");
}

/// A worker killed at a random moment of a running `map` or
/// `imap_unordered`, 60 times: every result not reported lost is right
/// and unique, at most the killed worker's chunk is lost, and the pool is
/// usable after each.
fn random_kills_lose_nothing_else() {
    let pool = Pool::new(2).unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ u64::from(std::process::id()));
    let mut lost_total = 0;
    let mut rounds_with_loss = 0;
    const N: u64 = 30_000;
    const CHUNK: usize = 16;
    for round in 0..60 {
        let unordered = round % 2 == 1;
        let results: Vec<Result<(u64, u64), TaskError>> = std::thread::scope(|s| {
            let h = s.spawn(|| {
                if unordered {
                    pool.chunksize(CHUNK)
                        .imap_unordered(tagged_busy, 0..N)
                        .unwrap()
                        .collect()
                } else {
                    pool.chunksize(CHUNK)
                        .map_results(tagged_busy, 0..N)
                        .unwrap()
                }
            });
            std::thread::sleep(Duration::from_micros(rng.next() % 20_000));
            let pids = pool.worker_pids();
            if !pids.is_empty() {
                kill9(pids[(rng.next() % pids.len() as u64) as usize]);
            }
            h.join().unwrap()
        });
        assert_eq!(results.len() as u64, N, "round {round}");
        let mut seen = HashSet::new();
        let mut lost = 0;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok((idx, v)) => {
                    if !unordered {
                        assert_eq!(idx, i as u64);
                    }
                    assert_eq!(v, tagged(idx).1);
                    assert!(seen.insert(idx), "round {round}: item {idx} twice");
                }
                Err(TaskError::WorkerLost { .. }) => lost += 1,
                Err(e) => panic!("round {round}: {e:?}"),
            }
        }
        assert!(
            lost <= CHUNK,
            "round {round}: {lost} items lost for one kill"
        );
        lost_total += lost;
        rounds_with_loss += usize::from(lost > 0);
        assert_eq!(pool.apply(inc, 1).unwrap(), 2, "round {round}");
    }
    eprintln!("{lost_total} items lost in {rounds_with_loss} of 60 rounds with a kill");
    // Kills landed in the middle of chunks (else the test proves little).
    assert!(rounds_with_loss > 0);
}

/// Cell 1 counts attempts of item 5, whose first run aborts its worker.
fn dies_on_first_try(x: u64) -> u64 {
    if x == 5 && cells().get(1).fetch_add(1, Ordering::AcqRel) == 0 {
        std::process::abort();
    }
    x
}

fn lost_tasks_fail_or_retry() {
    let c = cells();
    c.get(1).store(0, Ordering::Release);
    let pool = Pool::new(2).unwrap();
    let r = pool
        .chunksize(1)
        .map_results(dies_on_first_try, 0..10u64)
        .unwrap();
    assert!(matches!(
        r[5],
        Err(TaskError::WorkerLost {
            exitcode: Some(-6),
            ..
        })
    ));
    assert!(r.iter().enumerate().all(|(i, r)| i == 5 || r.is_ok()));
    drop(pool);
    c.get(1).store(0, Ordering::Release);
    let pool = Pool::builder()
        .workers(2)
        .lost_tasks(LostTasks::Retry(1))
        .build()
        .unwrap();
    let r = pool.chunksize(1).map(dies_on_first_try, 0..10u64).unwrap();
    assert_eq!(r, (0..10).collect::<Vec<_>>());
    assert_eq!(c.get(1).load(Ordering::Acquire), 2);
}

static INITIALIZED: AtomicU64 = AtomicU64::new(0);

fn set_up_worker() {
    INITIALIZED.store(42, Ordering::Relaxed);
}

fn initializer_and_max_tasks_per_child() {
    let pool = Pool::builder()
        .workers(2)
        .initializer(set_up_worker)
        .max_tasks_per_child(3)
        .build()
        .unwrap();
    let seen = pool
        .chunksize(1)
        .map(|_: u64| INITIALIZED.load(Ordering::Relaxed), 0..30u64)
        .unwrap();
    assert!(seen.iter().all(|&v| v == 42));
    assert_eq!(
        INITIALIZED.load(Ordering::Relaxed),
        0,
        "ran in the workers only"
    );
    let pids: HashSet<u32> = pool
        .chunksize(1)
        .map(pid_of_worker, 0..30u64)
        .unwrap()
        .into_iter()
        .collect();
    assert!(pids.len() >= 10, "3 tasks per worker: {} pids", pids.len());
}

fn spawn_and_forkserver_workers() {
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        let mut pool = Pool::builder()
            .workers(2)
            .start_method(method)
            .initializer(set_up_worker)
            .build()
            .unwrap();
        assert_eq!(
            pool.map(square, 0..1000u64).unwrap(),
            (0..1000u64).map(|x| x * x).collect::<Vec<_>>()
        );
        assert_eq!(
            pool.apply(|_: u8| INITIALIZED.load(Ordering::Relaxed), 0)
                .unwrap(),
            42
        );
        let (r, victim) = std::thread::scope(|s| {
            let h = s.spawn(|| pool.chunksize(1).map_results(sleepy, vec![300u64; 4]));
            std::thread::sleep(Duration::from_millis(100));
            let victim = pool.worker_pids()[0];
            kill9(victim);
            (h.join().unwrap().unwrap(), victim)
        });
        let lost = r.iter().filter(|r| r.is_err()).count();
        assert_eq!(lost, 1, "{method:?}: {r:?}");
        assert!(!pool.worker_pids().contains(&victim));
        assert_eq!(pool.apply(inc, 1).unwrap(), 2);
        pool.close();
        pool.join().unwrap();
    }
}

fn items_and_results_too_large() {
    let pool = Pool::builder().workers(1).ring_size(4096).build().unwrap();
    let big = "x".repeat(5000);
    let r = pool
        .map_results(|s: String| s.len(), vec!["ok".to_string(), big])
        .unwrap();
    assert_eq!(r[0], Ok(2));
    assert!(
        matches!(r[1], Err(TaskError::ItemTooLarge { len: 5002, .. })),
        "{:?}",
        r[1]
    );
    let r = pool
        .map_results(|n: u64| vec![7u8; n as usize], vec![10, 5000])
        .unwrap();
    assert_eq!(r[0].as_ref().unwrap().len(), 10);
    assert!(
        matches!(r[1], Err(TaskError::ResultTooLarge { .. })),
        "{:?}",
        r[1]
    );
    assert_eq!(pool.apply(inc, 1).unwrap(), 2);
}

fn close_join_and_terminate() {
    let mut pool = Pool::new(2).unwrap();
    assert!(matches!(pool.join(), Err(PoolError::NotClosed)));
    let pending = pool.map_async(sleepy, vec![50u64; 6]).unwrap();
    pool.close();
    assert!(matches!(pool.apply(inc, 1), Err(PoolError::Closed)));
    pool.join().unwrap();
    assert_eq!(pending.get().unwrap(), vec![50; 6]);
    assert!(no_children_left());

    let mut pool = Pool::new(2).unwrap();
    let long = pool.map_async(sleepy, vec![60_000u64; 4]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    pool.terminate();
    eprintln!("terminate with running tasks: {:?}", t.elapsed());
    assert!(matches!(
        long.get(),
        Err(PoolError::Task {
            error: TaskError::Terminated,
            ..
        })
    ));
    assert!(no_children_left());
}

fn drop_leaves_no_process_fd_or_segment() {
    let shm_before: HashSet<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let fds = open_fds();
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let pool = Pool::builder()
            .workers(2)
            .start_method(method)
            .build()
            .unwrap();
        let _running = pool.map_async(sleepy, vec![10_000u64; 1]).unwrap();
        assert_eq!(pool.map(inc, 0..100u64).unwrap().len(), 100);
        let t = Instant::now();
        drop(pool);
        eprintln!("{method:?}: drop took {:?}", t.elapsed());
        assert!(no_children_left(), "{method:?}: a child is left");
        if open_fds() != fds {
            for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
                eprintln!("{:?} -> {:?}", e.file_name(), std::fs::read_link(e.path()));
            }
        }
        assert_eq!(open_fds(), fds, "{method:?}: descriptors leaked");
    }
    let shm_after: HashSet<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    // Other tests run beside this one (nextest runs each in its own
    // process) and create segments of their own: count only the names this
    // process generated, whose creator field is its pid.
    let own = format!("mp-{}-", std::process::id());
    let mine: Vec<_> = shm_after
        .difference(&shm_before)
        .filter(|n| n.starts_with(&own))
        .collect();
    assert!(mine.is_empty(), "segments left: {mine:?}");
}

/// The owner is SIGKILLed with its pool busy: every worker dies too.
fn workers_die_with_a_killed_owner() {
    let c = cells();
    for (i, c0) in [(0usize, 10usize), (1, 20)] {
        let method = if i == 0 {
            StartMethod::Fork
        } else {
            StartMethod::Spawn
        };
        let mut owner = fork(move || {
            let pool = Pool::builder()
                .workers(2)
                .start_method(method)
                .build()
                .unwrap();
            let pids = pool.worker_pids();
            let _r = pool.map_async(sleepy, vec![60_000u64; 2]).unwrap();
            for (k, p) in pids.iter().enumerate() {
                c.get(c0 + 1 + k).store(u64::from(*p), Ordering::Release);
            }
            c.get(c0).store(1, Ordering::Release);
            std::thread::sleep(Duration::from_secs(600));
            0
        });
        c.wait_for(c0, 1);
        let workers: Vec<u32> = (0..2)
            .map(|k| c.get(c0 + 1 + k).load(Ordering::Acquire) as u32)
            .collect();
        assert!(workers.iter().all(|&p| running(p)));
        owner.kill9();
        let end = Instant::now() + Duration::from_secs(30);
        while workers.iter().any(|&p| running(p)) {
            assert!(
                Instant::now() < end,
                "{method:?}: workers {workers:?} outlived their owner"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn fork_pool_with_threads_is_refused() {
    // A second fork pool while the first one's watcher runs is fine.
    let a = Pool::new(1).unwrap();
    let b = Pool::new(1).unwrap();
    assert_eq!(a.apply(inc, 1).unwrap() + b.apply(inc, 2).unwrap(), 5);
    // `b`'s zygote holds a copy of `a`'s socket end: `a` still ends at
    // once, and leaves no child behind.
    let t = Instant::now();
    drop(a);
    eprintln!("first of two pools dropped in {:?}", t.elapsed());
    drop(b);
    assert!(no_children_left());
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || rx.recv().ok());
    let e = Pool::new(2).unwrap_err();
    assert!(
        matches!(e, PoolError::Start(ProcessError::ForkWithThreads { .. })),
        "{e:?}"
    );
    let pool = Pool::builder()
        .workers(2)
        .start_method(StartMethod::Forkserver)
        .build()
        .unwrap();
    assert_eq!(pool.apply(inc, 1).unwrap(), 2);
    drop(pool);
    tx.send(()).unwrap();
    t.join().unwrap();
}

fn main() {
    multiproc::init();
    let _ = cells();
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            map_of_numbers_and_strings,
            hundreds_of_thousands_of_tasks_exactly_once,
            panics_fail_only_their_item,
            apply_async_and_map_async,
            imap_reads_its_input_lazily,
            queued_chunks_do_not_wait_behind_a_long_one,
            killed_worker_fails_only_its_task,
            random_kills_lose_nothing_else,
            lost_tasks_fail_or_retry,
            initializer_and_max_tasks_per_child,
            spawn_and_forkserver_workers,
            items_and_results_too_large,
            close_join_and_terminate,
            drop_leaves_no_process_fd_or_segment,
            workers_die_with_a_killed_owner,
            fork_pool_with_threads_is_refused,
        ],
        WATCHDOG,
    );
}
