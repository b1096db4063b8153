//! `multiproc::process` between real processes, for every start method.
//!
//! A custom harness (`harness = false`): `spawn` and `forkserver` re-run
//! this binary, whose `main` registers the entry points and calls
//! `multiproc::init()` before the harness. Every test runs under a
//! watchdog, so a deadlock fails the test instead of hanging CI.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::process::{args_as, Builder, JoinError, ProcessError};
use multiproc::shm::SharedMemory;
use multiproc::{Process, StartMethod};
use multiproc_tests::process_support::{
    is_dead, kill9, run_tests, stat, wait_dead, zombie_children, Test,
};

const WATCHDOG: Duration = Duration::from_secs(60);
const METHODS: [StartMethod; 3] = [
    StartMethod::Fork,
    StartMethod::Spawn,
    StartMethod::Forkserver,
];

// ---------------------------------------------------------------------------
// Entry points (run in children).

fn entry_exit_with(args: &[u8]) -> i32 {
    args.first().map_or(0, |&b| i32::from(b))
}

fn entry_pod_sum(args: &[u8]) -> i32 {
    match args_as::<[u32; 4]>(args) {
        Some(v) => (v.iter().sum::<u32>() % 256) as i32,
        None => 255,
    }
}

fn entry_panic(args: &[u8]) -> i32 {
    panic!("entry panicked: {}", String::from_utf8_lossy(args));
}

fn entry_sleep(_: &[u8]) -> i32 {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Checks the child's identity: args are "<expected name>"; the parent's
/// pid comes through a shared segment named in the environment-free way:
/// the name follows a NUL.
fn entry_identity(args: &[u8]) -> i32 {
    let text = String::from_utf8_lossy(args).into_owned();
    let Some((name, parent)) = text.split_once('\0') else {
        return 10;
    };
    let me = multiproc::current_process();
    if me.name != name {
        return 11;
    }
    match multiproc::parent_process() {
        Some(p) if p.pid.to_string() == parent && p.is_alive() => {}
        _ => return 12,
    }
    0
}

/// Writes its pid (and a marker) into the named segment given as args,
/// then sleeps: the daemon of the parent-death test.
fn entry_report_pid_and_sleep(args: &[u8]) -> i32 {
    let Ok(name) = std::str::from_utf8(args) else {
        return 20;
    };
    let Ok(mut shm) = SharedMemory::open(name) else {
        return 21;
    };
    let _ = shm.write_at(8, &u64::from(std::process::id()).to_le_bytes());
    entry_sleep(&[])
}

/// Entry run by the daemon test's middle process: starts a daemon with the
/// method given in args[0], reports its pid, then sleeps until killed.
fn entry_start_daemon(args: &[u8]) -> i32 {
    let method = match args.first() {
        Some(0) => StartMethod::Fork,
        Some(1) => StartMethod::Spawn,
        _ => StartMethod::Forkserver,
    };
    let Ok(name) = std::str::from_utf8(&args[1..]) else {
        return 30;
    };
    let builder = match method {
        StartMethod::Fork => Process::new(|| entry_sleep(&[])),
        _ => Process::entry("report-pid-and-sleep", name.as_bytes().to_vec()),
    };
    let Ok(p) = builder.daemon(true).start_method(method).start() else {
        return 31;
    };
    let Ok(mut shm) = SharedMemory::open(name) else {
        return 32;
    };
    let _ = shm.write_at(0, &u64::from(p.pid()).to_le_bytes());
    let _keep = p;
    entry_sleep(&[])
}

const ENTRIES: &[(&str, multiproc::process::EntryFn)] = &[
    ("exit-with", entry_exit_with),
    ("pod-sum", entry_pod_sum),
    ("panic", entry_panic),
    ("sleep", entry_sleep),
    ("identity", entry_identity),
    ("report-pid-and-sleep", entry_report_pid_and_sleep),
    ("start-daemon", entry_start_daemon),
];

// ---------------------------------------------------------------------------
// Helpers.

fn entry(method: StartMethod, name: &str, args: &[u8]) -> Builder {
    Process::entry(name, args.to_vec())
        .start_method(method)
        .handshake_timeout(Duration::from_secs(20))
}

fn read_u64(shm: &mut SharedMemory, off: usize) -> u64 {
    let mut b = [0u8; 8];
    shm.read_at(off, &mut b).unwrap();
    u64::from_le_bytes(b)
}

fn wait_u64(shm: &mut SharedMemory, off: usize) -> u64 {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let v = read_u64(shm, off);
        if v != 0 {
            return v;
        }
        assert!(Instant::now() < end, "no value at offset {off} in time");
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------------------
// Tests.

fn fork_closure_exit_codes() {
    let p = multiproc::spawn(|| ()).unwrap();
    let s = p.join().unwrap();
    assert!(s.success());
    assert_eq!(p.exitcode(), Some(0));

    let p = Process::new(|| 7).name("seven").start().unwrap();
    assert_eq!(p.name(), "seven");
    assert_eq!(p.join().unwrap().code(), Some(7));
    // Joining again gives the same answer.
    assert_eq!(p.join().unwrap().code(), Some(7));
    assert!(!p.is_alive());

    // The kernel keeps the low 8 bits of an exit code.
    let p = multiproc::spawn(|| 300).unwrap();
    assert_eq!(p.join().unwrap().code(), Some(300 % 256));
}

fn fork_closure_sees_parent_memory() {
    let shm = SharedMemory::anonymous(4096).unwrap();
    let cell = shm.as_ptr() as usize;
    let data = [1u64, 2, 3];
    let p = multiproc::spawn(move || {
        // SAFETY: the anonymous mapping is inherited at the same address,
        // 8-aligned, and only this child writes the cell meanwhile.
        let a = unsafe { &*(cell as *const AtomicU64) };
        a.store(data.iter().sum(), Ordering::Release);
    })
    .unwrap();
    p.join().unwrap();
    // SAFETY: as above, the child has exited.
    let a = unsafe { &*(shm.as_ptr() as *const AtomicU64) };
    assert_eq!(a.load(Ordering::Acquire), 6);
}

fn panics_carry_their_message() {
    for method in METHODS {
        let p = match method {
            StartMethod::Fork => Process::new(|| -> () { panic!("entry panicked: fork {}", 42) })
                .start()
                .unwrap(),
            _ => entry(method, "panic", method.as_str().as_bytes())
                .start()
                .unwrap(),
        };
        match p.join() {
            Err(JoinError::Panicked { message, status }) => {
                assert!(
                    message.starts_with("entry panicked: "),
                    "{method}: message {message:?}"
                );
                assert!(message.contains(if method == StartMethod::Fork {
                    "fork 42"
                } else {
                    method.as_str()
                }));
                assert_eq!(status.code(), Some(101), "{method}");
            }
            other => panic!("{method}: expected a panic, got {other:?}"),
        }
        assert_eq!(p.exitcode(), Some(101));
    }
}

fn closure_errors_fail_the_join() {
    let p = multiproc::spawn(|| -> Result<(), String> { Err("disk on fire".into()) }).unwrap();
    match p.join() {
        Err(JoinError::Failed { message, status }) => {
            assert_eq!(message, "disk on fire");
            assert_eq!(status.code(), Some(1));
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    let p = multiproc::spawn(|| -> Result<(), String> { Ok(()) }).unwrap();
    assert!(p.join().unwrap().success());
}

fn entry_points_get_their_arguments() {
    for method in METHODS {
        let p = entry(method, "exit-with", &[42]).start().unwrap();
        assert_eq!(p.join().unwrap().code(), Some(42), "{method}");
        assert_eq!(p.start_method(), method);
        let v: [u32; 4] = [10, 20, 30, 40];
        let p = Process::entry_pod("pod-sum", &v)
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(p.join().unwrap().code(), Some(100), "{method}");
        // Large arguments (more than a socket buffer) are streamed.
        let big = vec![7u8; 3 << 20];
        let p = entry(method, "exit-with", &big).start().unwrap();
        assert_eq!(p.join().unwrap().code(), Some(7), "{method}");
    }
}

fn terminate_and_kill_give_negative_exitcodes() {
    for method in METHODS {
        for (sig, how) in [(libc::SIGTERM, "terminate"), (libc::SIGKILL, "kill")] {
            let p = match method {
                StartMethod::Fork => Process::new(|| entry_sleep(&[])).start().unwrap(),
                _ => entry(method, "sleep", b"").start().unwrap(),
            };
            assert!(p.is_alive());
            assert_eq!(p.exitcode(), None);
            if sig == libc::SIGTERM {
                p.terminate().unwrap();
            } else {
                p.kill().unwrap();
            }
            let s = p.join().unwrap();
            assert_eq!(s.signal(), Some(sig), "{method} {how}");
            assert_eq!(p.exitcode(), Some(-sig), "{method} {how}");
            assert!(!p.is_alive());
            // Signalling an ended child is a no-op.
            p.kill().unwrap();
        }
    }
}

fn join_timeout_gives_up_then_succeeds() {
    for method in METHODS {
        let p = match method {
            StartMethod::Fork => Process::new(|| entry_sleep(&[])).start().unwrap(),
            _ => entry(method, "sleep", b"").start().unwrap(),
        };
        assert!(
            matches!(
                p.join_timeout(Duration::from_millis(20)),
                Err(JoinError::Timeout)
            ),
            "{method}"
        );
        assert!(
            matches!(p.join_timeout(Duration::ZERO), Err(JoinError::Timeout)),
            "{method}"
        );
        assert!(p.is_alive());
        p.kill().unwrap();
        let s = p.join_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(s.signal(), Some(libc::SIGKILL), "{method}");
    }
}

fn join_and_terminate_from_two_threads() {
    for method in METHODS {
        let p = match method {
            StartMethod::Fork => Process::new(|| entry_sleep(&[])).start().unwrap(),
            _ => entry(method, "sleep", b"").start().unwrap(),
        };
        std::thread::scope(|s| {
            let joiner = s.spawn(|| p.join());
            std::thread::sleep(Duration::from_millis(20));
            p.terminate().unwrap();
            let r = joiner.join().unwrap().unwrap();
            assert_eq!(r.signal(), Some(libc::SIGTERM), "{method}");
        });
    }
}

fn identity_in_children() {
    let me = std::process::id();
    for method in METHODS {
        let name = format!("worker-{method}");
        let args = format!("{name}\0{me}");
        let p = entry(method, "identity", args.as_bytes())
            .name(name.clone())
            .start()
            .unwrap();
        assert_eq!(p.join().unwrap().code(), Some(0), "{method}");
    }
    // A fork closure with a default name.
    let p = multiproc::spawn(move || {
        let cur = multiproc::current_process();
        let ok = cur.name.starts_with("Process-")
            && cur.start_method == Some(StartMethod::Fork)
            && multiproc::parent_process().map(|p| p.pid) == Some(me);
        i32::from(!ok)
    })
    .unwrap();
    assert_eq!(p.join().unwrap().code(), Some(0));
    assert_eq!(multiproc::current_process().name, "MainProcess");
    assert!(multiproc::parent_process().is_none());
}

fn bad_inputs_are_clear_errors() {
    // A closure cannot cross exec.
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        match Process::new(|| ()).start_method(method).start() {
            Err(ProcessError::ClosureNeedsFork { method: m }) => assert_eq!(m, method),
            other => panic!("{method}: {other:?}"),
        }
    }
    // The default start method applies to closures too.
    multiproc::set_start_method(StartMethod::Spawn);
    let r = multiproc::spawn(|| ());
    multiproc::set_start_method(StartMethod::Fork);
    assert!(
        matches!(r, Err(ProcessError::ClosureNeedsFork { .. })),
        "{r:?}"
    );

    // Arguments larger than a launch frame: refused before anything
    // starts (the child or the server would refuse the frame). `vec!` of
    // zeros maps pages lazily: the GiB is never touched.
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        match Process::entry("exit-with", vec![0u8; (1 << 30) + 1])
            .start_method(method)
            .start()
        {
            Err(ProcessError::ArgumentsTooLarge { len, max }) => {
                assert!(len > max, "{method}: {len} <= {max}")
            }
            other => panic!("{method}: {other:?}"),
        }
    }

    // Unknown in the parent.
    for method in METHODS {
        match entry(method, "no-such-entry", b"").start() {
            Err(ProcessError::UnknownEntry { name }) => assert_eq!(name, "no-such-entry"),
            other => panic!("{method}: {other:?}"),
        }
    }
    // Known in the parent only (registered after init): the re-executed
    // child or the fork server reports it.
    fn parent_only(_: &[u8]) -> i32 {
        0
    }
    multiproc::register_entry("parent-only", parent_only).unwrap();
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        match entry(method, "parent-only", b"").start() {
            Err(ProcessError::UnknownEntry { name }) => assert_eq!(name, "parent-only"),
            other => panic!("{method}: {other:?}"),
        }
    }
    assert!(zombie_children().is_empty(), "{:?}", zombie_children());
}

fn missing_init_hook_is_detected() {
    // The child skips init() and exits: the handshake sees end of stream.
    std::env::set_var("MULTIPROC_TEST_SKIP_INIT", "exit");
    let r = entry(StartMethod::Spawn, "exit-with", &[0]).start();
    std::env::remove_var("MULTIPROC_TEST_SKIP_INIT");
    match r {
        Err(ProcessError::InitHookMissing { status: Some(s) }) => assert_eq!(s.code(), Some(0)),
        other => panic!("{other:?}"),
    }
    // The child skips init() and hangs: the handshake times out and the
    // child is killed.
    std::env::set_var("MULTIPROC_TEST_SKIP_INIT", "hang");
    let r = Process::entry("exit-with", vec![0])
        .start_method(StartMethod::Spawn)
        .handshake_timeout(Duration::from_millis(300))
        .start();
    std::env::remove_var("MULTIPROC_TEST_SKIP_INIT");
    assert!(
        matches!(r, Err(ProcessError::InitHookMissing { status: None })),
        "{r:?}"
    );
    assert!(zombie_children().is_empty(), "{:?}", zombie_children());
}

/// The fork server, started when the parent is multi-threaded and another
/// thread holds a lock (and stdout), still serves.
fn forkserver_and_spawn_from_a_multithreaded_parent() {
    let lock = std::sync::Mutex::new(());
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let held = &lock;
        s.spawn(move || {
            let _g = held.lock().unwrap();
            let _out = std::io::stdout().lock();
            tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        rx.recv().unwrap();
        for method in [StartMethod::Spawn, StartMethod::Forkserver] {
            let p = entry(method, "exit-with", &[5]).start().unwrap();
            assert_eq!(p.join().unwrap().code(), Some(5), "{method}");
        }
    });
}

/// A forked child prints while another thread of the parent is printing:
/// the stdout lock is held across the fork, so the child cannot inherit it
/// locked by a thread that does not exist there.
fn fork_child_can_print_while_another_thread_prints() {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                print!("");
            }
        });
        for _ in 0..20 {
            let b = Process::new(|| {
                println!("child output");
            });
            // SAFETY: the other thread only prints, and the stdout lock is
            // held by the forking thread across the fork (what this test
            // checks); the child only prints.
            let p = unsafe { b.allow_fork_with_threads() }.start();
            let Ok(p) = p else {
                stop.store(true, Ordering::Relaxed);
                panic!("{p:?}");
            };
            let r = p.join_timeout(Duration::from_secs(20)).unwrap();
            assert!(r.success(), "{r:?}");
        }
        stop.store(true, Ordering::Relaxed);
    });
}

fn daemon_is_killed_on_drop_and_detached_child_is_reaped() {
    for method in METHODS {
        let p = match method {
            StartMethod::Fork => Process::new(|| entry_sleep(&[])),
            _ => entry(method, "sleep", b""),
        }
        .daemon(true)
        .start_method(method)
        .start()
        .unwrap();
        let pid = p.pid();
        assert!(p.daemon());
        assert!(multiproc::active_children().iter().any(|c| c.pid == pid));
        drop(p);
        assert!(
            wait_dead(pid, Duration::from_secs(20)),
            "{method}: daemon {pid} survived its drop"
        );
        assert!(!multiproc::active_children().iter().any(|c| c.pid == pid));
    }
    // A non-daemon child outlives its handle, stays listed while running,
    // and is reaped once it has ended.
    let p = Process::new(|| std::thread::sleep(Duration::from_millis(200)))
        .start()
        .unwrap();
    let pid = p.pid();
    drop(p);
    assert!(multiproc::active_children().iter().any(|c| c.pid == pid));
    let end = Instant::now() + Duration::from_secs(20);
    while multiproc::active_children().iter().any(|c| c.pid == pid) {
        assert!(Instant::now() < end, "detached child never reaped");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        stat(pid).is_none(),
        "detached child left as {:?}",
        stat(pid)
    );
}

/// A parent (itself started with each method) starts a daemon child with
/// each method, then is killed with SIGKILL: the daemon must die too.
fn daemon_dies_when_parent_is_killed() {
    for outer in [StartMethod::Fork, StartMethod::Spawn] {
        for inner in METHODS {
            let shm = SharedMemory::create_unique(4096).unwrap();
            let name = shm.name().unwrap().to_owned();
            let mut args = vec![match inner {
                StartMethod::Fork => 0u8,
                StartMethod::Spawn => 1,
                _ => 2,
            }];
            args.extend_from_slice(name.as_bytes());
            let parent = entry(outer, "start-daemon", &args).start().unwrap();
            let mut shm = shm;
            let daemon = wait_u64(&mut shm, 0) as u32;
            if inner != StartMethod::Fork {
                // The daemon itself says it runs (it reached its entry).
                assert_eq!(wait_u64(&mut shm, 8) as u32, daemon);
            }
            assert!(!is_dead(daemon));
            parent.kill().unwrap();
            assert_eq!(parent.join().unwrap().signal(), Some(libc::SIGKILL));
            let gone = wait_dead(daemon, Duration::from_secs(20));
            if !gone {
                kill9(daemon);
            }
            assert!(
                gone,
                "{outer} parent, {inner} daemon {daemon} outlived its parent"
            );
        }
    }
}

fn no_zombies_after_every_kind_of_end() {
    let mut handles = Vec::new();
    for method in METHODS {
        handles.push(entry(method, "exit-with", &[3]).start().unwrap());
        handles.push(entry(method, "panic", b"x").start().unwrap());
        let k = entry(method, "sleep", b"").start().unwrap();
        k.kill().unwrap();
        handles.push(k);
    }
    // Ended but never joined, handle dropped: reaped by the next sweep.
    let dropped: Vec<u32> = (0..3)
        .map(|_| multiproc::spawn(|| 0).unwrap().pid())
        .collect();
    for h in &handles {
        let _ = h.join();
    }
    drop(handles);
    for pid in dropped {
        let end = Instant::now() + Duration::from_secs(20);
        while stat(pid).is_some() {
            multiproc::active_children();
            assert!(Instant::now() < end, "{pid} left as {:?}", stat(pid));
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(zombie_children().is_empty(), "{:?}", zombie_children());
    assert!(
        multiproc::active_children().is_empty(),
        "{:?}",
        multiproc::active_children()
    );
}

/// A forked child does not see its parent's children as its own, and
/// starts (and joins) children of its own with every method.
fn forked_child_has_its_own_children() {
    let sibling = Process::new(|| entry_sleep(&[]))
        .daemon(true)
        .start()
        .unwrap();
    let sibling_pid = sibling.pid();
    let p = multiproc::spawn(move || -> Result<(), String> {
        let inherited = multiproc::active_children();
        if !inherited.is_empty() {
            return Err(format!("inherited children {inherited:?}"));
        }
        for method in METHODS {
            let c = match method {
                StartMethod::Fork => Process::new(|| 9).start(),
                _ => entry(method, "exit-with", &[9]).start(),
            }
            .map_err(|e| format!("{method}: {e}"))?;
            match c.join() {
                Ok(s) if s.code() == Some(9) => {}
                other => return Err(format!("{method}: {other:?}")),
            }
        }
        Ok(())
    })
    .unwrap();
    let r = p.join_timeout(Duration::from_secs(30)).unwrap();
    assert!(r.success(), "{r:?}");
    assert!(sibling.is_alive());
    assert!(multiproc::active_children()
        .iter()
        .any(|c| c.pid == sibling_pid));
    drop(sibling);
    assert!(wait_dead(sibling_pid, Duration::from_secs(20)));
}

/// Pids of this process's children whose command line has `arg`.
fn children_with_arg(arg: &str) -> Vec<u32> {
    let me = std::process::id();
    multiproc_tests::process_support::all_processes()
        .into_iter()
        .filter(|&(pid, ppid, _)| {
            ppid == me
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == arg.as_bytes()))
        })
        .map(|(pid, _, _)| pid)
        .collect()
}

/// The fork server is killed with SIGKILL: the next start notices, starts
/// a new server and succeeds; the dead one is reaped, not left a zombie.
fn killed_forkserver_is_replaced() {
    let p = entry(StartMethod::Forkserver, "exit-with", &[1])
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap().code(), Some(1));
    let servers = children_with_arg("--multiproc-forkserver");
    assert_eq!(servers.len(), 1, "{servers:?}");
    kill9(servers[0]);
    assert!(wait_dead(servers[0], Duration::from_secs(20)));
    let p = entry(StartMethod::Forkserver, "exit-with", &[2])
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap().code(), Some(2));
    let now = children_with_arg("--multiproc-forkserver");
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0], servers[0]);
    multiproc::active_children();
    assert!(zombie_children().is_empty(), "{:?}", zombie_children());
}

/// The fork server exits when its client does.
fn forkserver_exits_with_its_client() {
    let shm = SharedMemory::create_unique(4096).unwrap();
    let name = shm.name().unwrap().to_owned();
    let mut shm = shm;
    // The client is a spawned child that starts a forkserver daemon (and
    // so the server), reports the daemon's pid, then sleeps.
    let mut args = vec![2u8];
    args.extend_from_slice(name.as_bytes());
    let client = entry(StartMethod::Spawn, "start-daemon", &args)
        .start()
        .unwrap();
    let daemon = wait_u64(&mut shm, 0) as u32;
    let server = stat(daemon).map(|(ppid, _)| ppid).unwrap();
    assert_eq!(stat(server).map(|(ppid, _)| ppid), Some(client.pid()));
    client.kill().unwrap();
    client.join().unwrap();
    let gone = wait_dead(server, Duration::from_secs(20));
    if !gone {
        kill9(server);
    }
    assert!(gone, "the fork server outlived its client");
}

fn cpu_count_honours_affinity() {
    let n = multiproc::cpu_count();
    assert!(n >= 1);
    assert_eq!(n, std::thread::available_parallelism().unwrap().get());
    // Restricting the mask to one CPU (in a child, to leave ours alone).
    let p = multiproc::spawn(|| {
        // SAFETY: cpu_set_t is plain data; all-zero is an empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: CPU 0 is within the set's capacity.
        unsafe { libc::CPU_SET(0, &mut set) };
        // SAFETY: a valid set of the size passed.
        let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
        if r != 0 {
            return 2;
        }
        i32::from(multiproc::cpu_count() != 1)
    })
    .unwrap();
    assert_eq!(p.join().unwrap().code(), Some(0));
}

fn main() {
    for (name, f) in ENTRIES {
        multiproc::register_entry(name, *f).unwrap();
    }
    // Lets a test simulate a program that forgot the init hook.
    match std::env::var("MULTIPROC_TEST_SKIP_INIT").as_deref() {
        Ok("exit") => return,
        Ok("hang") => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        _ => {}
    }
    multiproc::init();

    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            fork_closure_exit_codes,
            fork_closure_sees_parent_memory,
            panics_carry_their_message,
            closure_errors_fail_the_join,
            entry_points_get_their_arguments,
            terminate_and_kill_give_negative_exitcodes,
            join_timeout_gives_up_then_succeeds,
            join_and_terminate_from_two_threads,
            identity_in_children,
            bad_inputs_are_clear_errors,
            missing_init_hook_is_detected,
            forkserver_and_spawn_from_a_multithreaded_parent,
            fork_child_can_print_while_another_thread_prints,
            daemon_is_killed_on_drop_and_detached_child_is_reaped,
            daemon_dies_when_parent_is_killed,
            no_zombies_after_every_kind_of_end,
            killed_forkserver_is_replaced,
            forked_child_has_its_own_children,
            forkserver_exits_with_its_client,
            cpu_count_honours_affinity,
        ],
        WATCHDOG,
    )
}
