//! Support for tests of `multiproc`'s processes: a small test harness for
//! binaries that need their own `main` (the `spawn` and `forkserver` start
//! methods re-run the test binary, which must reach `multiproc::init()`
//! before anything else), a per-test watchdog, and checks for zombies and
//! leftover processes.
//!
//! The harness speaks the part of libtest's command line that cargo-nextest
//! and `cargo test` use: `--list --format terse` (with `--ignored`, which
//! lists nothing), a name filter with `--exact`, and ignores the other
//! flags (`--nocapture`, `--test-threads`, `-q`).

use std::io::Write;
use std::time::{Duration, Instant};

/// One test of a custom-harness binary.
#[derive(Debug, Clone, Copy)]
pub struct Test {
    /// Its name, as listed and filtered.
    pub name: &'static str,
    /// The test; panics to fail.
    pub run: fn(),
}

extern "C" fn on_alarm(_: libc::c_int) {
    const MSG: &[u8] = b"\nwatchdog: the test did not finish in time (deadlock?)\n";
    // SAFETY: write and _exit are async-signal-safe; MSG is static.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::_exit(3);
    }
}

/// Arms the watchdog: if the process is still running after `timeout`, it
/// prints a message and exits with code 3. One alarm per process (not
/// inherited by forked children); arming again replaces it.
pub fn watchdog(timeout: Duration) {
    // SAFETY: installs an async-signal-safe handler for SIGALRM, then
    // arms the process's alarm.
    unsafe {
        libc::signal(libc::SIGALRM, on_alarm as *const () as usize);
        libc::alarm(timeout.as_secs().max(1) as libc::c_uint);
    }
}

/// Runs the tests selected by the command line, each under a watchdog of
/// `timeout`; exits the process with 0 if all passed, 101 otherwise.
pub fn run_tests(tests: &[Test], timeout: Duration) -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |f: &str| args.iter().any(|a| a == f);
    if has("--list") {
        if !has("--ignored") {
            for t in tests {
                println!("{}: test", t.name);
            }
        }
        std::process::exit(0);
    }
    let exact = has("--exact");
    let mut skip_value = false;
    let filters: Vec<&String> = args
        .iter()
        .filter(|a| {
            if skip_value {
                skip_value = false;
                return false;
            }
            if matches!(
                a.as_str(),
                "--test-threads" | "--format" | "--logfile" | "--skip"
            ) {
                skip_value = true;
                return false;
            }
            !a.starts_with('-')
        })
        .collect();
    let selected: Vec<&Test> = tests
        .iter()
        .filter(|t| {
            filters.is_empty()
                || filters.iter().any(|f| {
                    if exact {
                        t.name == f.as_str()
                    } else {
                        t.name.contains(f.as_str())
                    }
                })
        })
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for t in &selected {
        print!("test {} ... ", t.name);
        let _ = std::io::stdout().flush();
        watchdog(timeout);
        let start = Instant::now();
        let r = std::panic::catch_unwind(t.run);
        // SAFETY: alarm(0) cancels the pending alarm.
        unsafe { libc::alarm(0) };
        match r {
            Ok(()) => println!("ok ({:.2?})", start.elapsed()),
            Err(_) => {
                println!("FAILED");
                failed.push(t.name);
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len(),
        tests.len() - selected.len()
    );
    if !failed.is_empty() {
        println!("failures: {failed:?}");
        std::process::exit(101);
    }
    std::process::exit(0)
}

/// `(pid, parent pid, state letter)` of every process in `/proc`.
pub fn all_processes() -> Vec<(u32, u32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((ppid, state)) = stat(pid) {
            out.push((pid, ppid, state));
        }
    }
    out
}

/// `(parent pid, state letter)` of `pid` from `/proc/<pid>/stat`, or
/// `None` if it is gone.
pub fn stat(pid: u32) -> Option<(u32, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Children of this process that are zombies (ended, not reaped).
pub fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    all_processes()
        .into_iter()
        .filter(|&(_, ppid, st)| ppid == me && st == 'Z')
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Whether `pid` is gone or a zombie (dead, waiting to be reaped by
/// whoever adopted it).
pub fn is_dead(pid: u32) -> bool {
    stat(pid).is_none_or(|(_, st)| st == 'Z' || st == 'X')
}

/// Waits up to `timeout` for `pid` to be dead ([`is_dead`]).
pub fn wait_dead(pid: u32, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if is_dead(pid) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `SIGKILL` to `pid` (cleanup after a failed test).
pub fn kill9(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}
