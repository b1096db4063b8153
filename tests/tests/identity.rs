//! Process identity that survives pid reuse and pid namespaces (issue 10,
//! item 2), with real processes, `kill -9`, real pid reuse and real pid
//! namespaces:
//!
//! - a mutex holder killed and its pid reused by an unrelated `sleep`: the
//!   next locker takes the lock over (`OwnerDied`) instead of timing out;
//! - an SPSC role holder killed and its pid reused: the role is claimed
//!   again (`FromDead`) instead of "held by a live process";
//! - an MPMC producer killed holding a slot and its pid reused: consumers
//!   step over the dead slot instead of waiting for the reuser to exit;
//! - a mutex shared with a process in another pid namespace (`unshare
//!   --pid --fork --mount-proc`): the attach is refused with
//!   `AttachError::ForeignPidNamespace`, in both directions, where it used
//!   to take over a live holder (child side) or wait forever (host side);
//! - `cleanup_leaked` run from another pid namespace keeps a live
//!   creator's segment; run while the creator is dead but another process
//!   maps the segment, keeps it; removes it once nobody holds it.
//!
//! Pid reuse is arranged by writing `victim - 1` to
//! `/proc/sys/kernel/ns_last_pid` and forking a sleeping process; both that and
//! `unshare` need root, as these tests run here.
//!
//! A custom harness (`harness = false`): the processes in another pid
//! namespace re-run this binary with `--identity-child <role> <args>`,
//! which `main` dispatches before the harness. Every test runs under a
//! watchdog; none asserts a time.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::shm::{cleanup_leaked, SharedMemory, ShmOptions};
use multiproc_core::mpmc::{MpmcRing, PopError};
use multiproc_core::mutex::{LockTimeoutError, Mutex, PoisonCause};
use multiproc_core::region::AttachError;
use multiproc_core::role::Claimed;
use multiproc_core::spsc::SpscRing;
use multiproc_tests::process_support::{run_tests, Test};
use multiproc_tests::{fork, Child, SharedMap};

const WATCHDOG: Duration = Duration::from_secs(120);
/// How long a locker may wait before the test calls it a time-out: far
/// longer than the ~100 ms the design needs, far shorter than the sleeper
/// that holds the reused pid.
const PATIENCE: Duration = Duration::from_secs(15);
/// The sleeper that takes the victim's pid lives this long (seconds).
const SLEEPER_SECS: u64 = 60;
/// Where the children of the namespace tests find their flags in the
/// segment: after the first region (one page).
const FLAGS: usize = 4096;
const SEG: usize = 8192;

const ROLE_ARG: &str = "--identity-child";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(ROLE_ARG) {
        std::process::exit(child_role(&args[2..]));
    }
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            mutex_owner_killed_and_pid_reused_is_taken_over,
            spsc_role_holder_killed_and_pid_reused_is_claimed_again,
            mpmc_slot_owner_killed_and_pid_reused_is_recovered,
            mutex_in_another_pid_namespace_is_refused_child_side,
            mutex_in_another_pid_namespace_is_refused_host_side,
            cleanup_from_another_pid_namespace_keeps_a_live_creators_segment,
            cleanup_keeps_a_segment_mapped_after_its_creator_died,
        ],
        WATCHDOG,
    );
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A process that sleeps under a reused pid; killed and reaped on drop
/// (by [`Child`]'s drop).
struct Sleeper(#[allow(dead_code)] Child);

/// Starts a sleeping process that gets `pid` (free again: its process was
/// killed and reaped), by setting `ns_last_pid` to `pid - 1` right before
/// a `fork`; another process on the machine may take the pid first, so it
/// retries. A `fork` (rather than spawning `sleep`) takes its pid
/// microseconds after the write, leaving the tests running in parallel
/// (forking, starting threads) little room to take it first: once one
/// does and keeps it, every retry fails.
fn reuse_pid(pid: u32) -> Sleeper {
    // The victim started at least two clock ticks (10 ms each at the usual
    // 100 Hz) before the sleeper: a start time is recorded in ticks, and a
    // pid reused within the very tick it was first handed out would pass
    // for its earlier owner (see `multiproc_core::identity`).
    std::thread::sleep(Duration::from_millis(30));
    let serial = lock_ns_last_pid();
    let lock_fd = {
        use std::os::fd::AsRawFd;
        serial.as_raw_fd()
    };
    const LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";
    let last_pid = || -> u32 {
        let s = std::fs::read_to_string(LAST_PID).expect("read ns_last_pid");
        s.trim().parse().expect("ns_last_pid is a number")
    };
    // Where pid allocation stood: put back once we have the pid, so that
    // the processes and threads started meanwhile (other tests run in
    // parallel) do not go on to take recently freed pids after ours, such
    // as the victim of another test waiting for its turn here.
    let before = last_pid();
    for _ in 0..200 {
        std::fs::write(LAST_PID, (pid - 1).to_string())
            .expect("writing /proc/sys/kernel/ns_last_pid needs root");
        let c = fork(move || {
            // Our copy of the lock's descriptor would hold the lock for as
            // long as we sleep.
            // SAFETY: closes a descriptor this process inherited and does
            // not otherwise use.
            unsafe { libc::close(lock_fd) };
            std::thread::sleep(Duration::from_secs(SLEEPER_SECS));
            0
        });
        if c.pid() == pid {
            if last_pid() < before {
                let _ = std::fs::write(LAST_PID, before.to_string());
            }
            return Sleeper(c);
        }
    }
    panic!("could not get pid {pid} reused (a busy machine?)");
}

/// Takes an exclusive lock (`flock`, released when the file closes) that
/// serialises pid reuse between the tests of this binary, which nextest
/// runs in parallel processes: tests writing `ns_last_pid` at the same
/// time keep taking each other's pid, and could use up their retries.
fn lock_ns_last_pid() -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("multiproc-tests-ns_last_pid.lock"))
        .expect("open the ns_last_pid lock file");
    // SAFETY: `f` is an open descriptor for the duration of the call;
    // flock touches no memory of ours.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock: {}", std::io::Error::last_os_error());
    f
}

/// Forks a child that runs `hold` (which must set `flag` to 1 once it
/// holds what it holds), waits for the flag, `kill -9`s the child and
/// reaps it. Returns its pid.
fn kill_holder(map: &SharedMap, hold: impl FnOnce()) -> u32 {
    let flag = flag_of(map);
    let mut child: Child = fork(move || {
        hold();
        // SAFETY: the flag word lives in the inherited shared mapping.
        unsafe { std::ptr::write_volatile(flag, 1) };
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let end = Instant::now() + WATCHDOG;
    // SAFETY: as above.
    while unsafe { std::ptr::read_volatile(flag) } == 0 {
        assert!(Instant::now() < end, "the holder never held");
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = child.pid();
    child.kill9();
    pid
}

/// The last word of `map`: a flag the forked holder sets.
fn flag_of(map: &SharedMap) -> *mut u64 {
    // SAFETY: the last 8 bytes of the mapping, aligned (page-sized map).
    unsafe { map.as_ptr().add(map.len() - 8).cast::<u64>() }
}

/// Runs this binary as `role args` in a new pid namespace (as pid 1 there,
/// with its own /proc), returning its exit code.
fn in_new_pid_namespace(role: &str, args: &[&str]) -> std::process::Child {
    Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(std::env::current_exe().unwrap())
        .arg(ROLE_ARG)
        .arg(role)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare (needs root)")
}

/// Waits for a child with a watchdog; its exit code.
fn wait_code(mut c: std::process::Child) -> i32 {
    let end = Instant::now() + WATCHDOG;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if Instant::now() >= end {
            let _ = c.kill();
            let _ = c.wait();
            panic!("child in the other pid namespace did not finish (deadlock?)");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn read_flag(shm: &mut SharedMemory, i: usize) -> u8 {
    let mut b = [0u8];
    shm.read_at(FLAGS + i, &mut b).unwrap();
    b[0]
}

fn wait_flag(shm: &mut SharedMemory, i: usize, c: &mut std::process::Child) {
    let end = Instant::now() + WATCHDOG;
    while read_flag(shm, i) == 0 {
        if let Some(s) = c.try_wait().unwrap() {
            panic!("child ended early: {s}");
        }
        assert!(Instant::now() < end, "flag {i} never set");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The mutex region at the start of a named segment.
fn mutex_in(shm: &SharedMemory) -> Result<Mutex<'_, u64>, AttachError> {
    Mutex::<u64>::attach(shm.region())
}

// ---------------------------------------------------------------------------
// Child roles (in another pid namespace)
// ---------------------------------------------------------------------------

/// Exit codes of the roles.
const OK: i32 = 0;
const ATTACHED: i32 = 10;
const TOOK_OVER_LIVE_HOLDER: i32 = 11;
const OTHER: i32 = 12;

fn child_role(args: &[String]) -> i32 {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(0) {
        // Attaches to the host's mutex (held by the live host) and tries
        // to lock it.
        "attach-mutex" => {
            let shm = SharedMemory::open(arg(1)).unwrap();
            match mutex_in(&shm) {
                Err(AttachError::ForeignPidNamespace { creator, ours }) => {
                    assert_ne!(creator, ours);
                    OK
                }
                Err(e) => {
                    eprintln!("attach: {e}");
                    OTHER
                }
                Ok(m) => match m.lock_timeout(Duration::from_millis(500)) {
                    // The host lives and holds it: taking it over is the bug.
                    Err(LockTimeoutError::Poisoned(_)) | Ok(_) => TOOK_OVER_LIVE_HOLDER,
                    Err(LockTimeoutError::TimedOut) => ATTACHED,
                },
            }
        }
        // Creates a mutex in the host's segment, locks it, raises flag 0,
        // and holds it until flag 1.
        "hold-mutex" => {
            let shm = SharedMemory::open(arg(1)).unwrap();
            let mut flags = SharedMemory::open(arg(1)).unwrap();
            let m = Mutex::<u64>::create(shm.region(), 7).unwrap();
            let g = m.lock().unwrap();
            flags.write_at(FLAGS, &[1]).unwrap();
            let end = Instant::now() + WATCHDOG;
            while read_flag(&mut flags, 1) == 0 && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(g);
            OK
        }
        // Runs cleanup_leaked; OK if it left the name alone.
        "cleanup" => match cleanup_leaked() {
            Ok(removed) if removed.iter().any(|n| n == arg(1)) => {
                eprintln!("cleanup_leaked removed {}", arg(1));
                OTHER
            }
            Ok(_) => OK,
            Err(e) => {
                eprintln!("cleanup_leaked: {e}");
                OTHER
            }
        },
        other => {
            eprintln!("unknown role {other:?}");
            OTHER
        }
    }
}

// ---------------------------------------------------------------------------
// Pid reuse
// ---------------------------------------------------------------------------

/// Repro: a mutex holder is SIGKILLed and its pid reused by `sleep`: the
/// next locker must get `OwnerDied` (it used to time out until the sleeper
/// exited).
fn mutex_owner_killed_and_pid_reused_is_taken_over() {
    let map = SharedMap::new(8192);
    let m = Mutex::<u64>::create(map.region(), 41).unwrap();
    let victim = kill_holder(&map, move || {
        let mut g = m.lock().unwrap();
        *g = 42;
        std::mem::forget(g);
    });
    let _sleeper = reuse_pid(victim);
    assert!(m.raw().is_locked());
    assert_eq!(m.raw().owner_pid(), Some(victim));
    let r = m.lock_timeout(PATIENCE);
    match r {
        Err(LockTimeoutError::Poisoned(p)) => {
            assert_eq!(p.cause(), PoisonCause::OwnerDied { pid: victim });
            assert_eq!(**p.get_ref(), 42);
        }
        Err(LockTimeoutError::TimedOut) => panic!(
            "timed out: the lock of dead pid {victim} was taken for held by the sleeper \
             that reuses its pid"
        ),
        Ok(_) => panic!("locked cleanly: the dead holder was not noticed"),
    };
}

/// Repro: an SPSC producer is SIGKILLed and its pid reused: the role must
/// be claimed again (it used to be "held by live process <pid>").
fn spsc_role_holder_killed_and_pid_reused_is_claimed_again() {
    let map = SharedMap::new(1 << 16);
    let ring = SpscRing::<u64>::create(map.region(), 8).unwrap();
    let victim = kill_holder(&map, move || {
        let mut p = ring.producer().unwrap();
        p.try_push(5).unwrap();
        std::mem::forget(p);
    });
    let _sleeper = reuse_pid(victim);
    match ring.producer() {
        Ok(p) => assert_eq!(p.claimed(), Claimed::FromDead(victim)),
        Err(e) => panic!("{e}: the sleeper that reuses the pid kept the role"),
    }
    let mut c = ring.consumer().unwrap();
    assert_eq!(c.try_pop(), Ok(5));
}

/// Repro: an MPMC producer is SIGKILLed holding a slot it took to write
/// in place (`W` under its pid) and its pid reused by `sleep`: consumers
/// must step over the dead slot and get the values pushed after it (they
/// used to wait until the sleeper exited, the slot's owner pid looking
/// alive).
fn mpmc_slot_owner_killed_and_pid_reused_is_recovered() {
    let map = SharedMap::new(1 << 16);
    let ring = MpmcRing::<u64>::create(map.region(), 4).unwrap();
    ring.try_push(1).unwrap();
    let victim = kill_holder(&map, move || {
        let mut slot = ring.try_push_ref().unwrap();
        *slot = 99;
        // Held until the kill: never published.
        std::mem::forget(slot);
    });
    let _sleeper = reuse_pid(victim);
    ring.try_push(2).unwrap();
    ring.try_push(3).unwrap();
    for want in 1..=3 {
        match ring.pop_timeout(PATIENCE) {
            Ok(v) => assert_eq!(v, want),
            Err(PopError::Empty) => panic!(
                "timed out before value {want}: the slot of dead pid {victim} was taken \
                 for held by the sleeper that reuses its pid"
            ),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ring.try_pop(), Err(PopError::Empty));
}

// ---------------------------------------------------------------------------
// Pid namespaces
// ---------------------------------------------------------------------------

/// Repro: a process in a child pid namespace attaching to a mutex the live
/// host holds used to take it over (the host's pid does not exist there):
/// both held it. Now the attach is refused.
fn mutex_in_another_pid_namespace_is_refused_child_side() {
    let shm = SharedMemory::create_unique(SEG).unwrap();
    let m = Mutex::<u64>::create(shm.region(), 0).unwrap();
    let _g = m.lock().unwrap();
    let name = shm.name().unwrap().to_owned();
    let code = wait_code(in_new_pid_namespace("attach-mutex", &[&name]));
    assert_eq!(
        code, OK,
        "the child in another pid namespace was not refused (10: attached, \
         11: took the live host's lock over)"
    );
}

/// Repro: the host attaching to a mutex that a process in a child pid
/// namespace holds (as its pid 1) used to wait forever, the child's pid
/// naming another process here. Now the attach is refused.
fn mutex_in_another_pid_namespace_is_refused_host_side() {
    let mut shm = SharedMemory::create_unique(SEG).unwrap();
    let name = shm.name().unwrap().to_owned();
    let mut child = in_new_pid_namespace("hold-mutex", &[&name]);
    wait_flag(&mut shm, 0, &mut child);
    let r = mutex_in(&shm).map(|m| match m.lock_timeout(Duration::from_millis(500)) {
        Err(LockTimeoutError::TimedOut) => "timed out (the child's pid means another process here)",
        _ => "locked",
    });
    shm.write_at(FLAGS + 1, &[1]).unwrap();
    assert_eq!(wait_code(child), OK);
    match r {
        Err(AttachError::ForeignPidNamespace { creator, ours }) => assert_ne!(creator, ours),
        Err(e) => panic!("attach: {e}"),
        Ok(what) => panic!("attached to a mutex of another pid namespace: {what}"),
    }
}

/// Repro: `cleanup_leaked` run from another pid namespace that shares
/// /dev/shm removed a live creator's segment (its pid is dead there).
fn cleanup_from_another_pid_namespace_keeps_a_live_creators_segment() {
    let shm = SharedMemory::create_unique(SEG).unwrap();
    let name = shm.name().unwrap().to_owned();
    assert_eq!(wait_code(in_new_pid_namespace("cleanup", &[&name])), OK);
    assert!(SharedMemory::open(&name).is_ok(), "{name} was removed");
}

/// Repro: `cleanup_leaked` run while the creator is dead but another
/// process still maps the segment removed the name from under that user.
/// Now it is kept while mapped, and removed once nobody holds it.
fn cleanup_keeps_a_segment_mapped_after_its_creator_died() {
    let board = SharedMap::new(4096);
    let name_at = board.as_ptr();
    let creator = kill_holder(&board, move || {
        let shm = ShmOptions::new().size(SEG).create_unique().unwrap();
        let name = shm.name().unwrap().as_bytes();
        // SAFETY: the board is an inherited shared mapping of a page; the
        // name is far shorter; the flag is set only after this.
        unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), name_at, name.len()) };
        std::mem::forget(shm);
    });
    let mut name = [0u8; 256];
    // SAFETY: written by the (now dead) creator before its flag.
    unsafe { std::ptr::copy_nonoverlapping(name_at, name.as_mut_ptr(), 256) };
    let len = name.iter().position(|&b| b == 0).unwrap();
    let name = std::str::from_utf8(&name[..len]).unwrap().to_owned();
    assert!(multiproc_tests::process_support::is_dead(creator));

    // Another process maps it (not this one: a process that maps it holds
    // it against its own cleanup too).
    let user_board = SharedMap::new(4096);
    let flag = flag_of(&user_board);
    let n = name.clone();
    let mut user = fork(move || {
        let s = SharedMemory::open(&n).unwrap();
        // SAFETY: inherited shared mapping.
        unsafe { std::ptr::write_volatile(flag, 1) };
        std::thread::sleep(Duration::from_secs(600));
        drop(s);
        0
    });
    let end = Instant::now() + WATCHDOG;
    // SAFETY: as above.
    while unsafe { std::ptr::read_volatile(flag) } == 0 {
        assert!(Instant::now() < end, "the user never mapped it");
        std::thread::sleep(Duration::from_millis(1));
    }
    let removed = cleanup_leaked().unwrap();
    assert!(
        !removed.contains(&name),
        "{name} removed while process {} maps it",
        user.pid()
    );
    assert!(SharedMemory::open(&name).is_ok());

    // Nobody holds it any more: removed.
    user.kill9();
    let removed = cleanup_leaked().unwrap();
    assert!(removed.contains(&name), "{name} not in {removed:?}");
    assert!(SharedMemory::open(&name).is_err());
}
