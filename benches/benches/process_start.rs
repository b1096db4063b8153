//! Process start + join latency: multiproc's three start methods side by
//! side with what a user would otherwise do, and with Python.
//!
//! | bench | what one iteration does |
//! |---|---|
//! | `bare_fork_waitpid` | `libc::fork`, child `_exit(0)`, `waitpid` |
//! | `multiproc_fork` | `Process::new(|| ()).start()` then `join()` |
//! | `command_rerun_self` | `Command` of this binary with `--exit-now` (exits at once), `status()` |
//! | `multiproc_spawn` | `Process::entry("noop")` with `Spawn`, start + join |
//! | `multiproc_forkserver` | the same with `Forkserver` (server already running) |
//! | `command_bin_true` | `Command::new("/bin/true").status()` |
//!
//! After criterion, a summary measures the medians again in one run and
//! prints the ratios the project targets (fork within 1.5x the bare fork,
//! also as the median ratio of alternated pairs,
//! spawn within 1.5x the bare re-run, forkserver within 3x the bare fork)
//! then the cost of each piece a fork start adds to a bare fork (result
//! pipe, pidfd, thread count, the child's `/proc` read of its own start
//! time, a copy-on-write fault), and, when python3 is present, Python's
//! `multiprocessing.Process` start + join for each start method (timed
//! inside Python). A filtered run (`-- multiproc_fork`) keeps to the fork
//! rows and the pieces, without Python.
//!
//! ```sh
//! cargo bench -p multiproc-benches --bench process_start
//! ```

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::Criterion;
use multiproc::{Process, StartMethod};

fn noop(_: &[u8]) -> i32 {
    0
}

fn bare_fork() {
    // SAFETY: the child only calls _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: leaves the child at once.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
}

fn mp_fork() {
    let p = Process::new(|| ()).start().unwrap();
    black_box(p.join().unwrap());
}

fn mp_entry(method: StartMethod) {
    let p = Process::entry("noop", Vec::new())
        .start_method(method)
        .start()
        .unwrap();
    black_box(p.join().unwrap());
}

fn command(program: &std::path::Path, arg: Option<&str>) {
    let mut c = Command::new(program);
    if let Some(a) = arg {
        c.arg(a);
    }
    let s = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(s.success());
}

type Case = (&'static str, Box<dyn Fn()>);

fn cases() -> Vec<Case> {
    let me = std::env::current_exe().unwrap();
    let me2 = me.clone();
    vec![
        ("bare_fork_waitpid", Box::new(bare_fork)),
        ("multiproc_fork", Box::new(mp_fork)),
        (
            "multiproc_forkserver",
            Box::new(|| mp_entry(StartMethod::Forkserver)),
        ),
        (
            "command_rerun_self",
            Box::new(move || command(&me, Some("--exit-now"))),
        ),
        ("multiproc_spawn", Box::new(|| mp_entry(StartMethod::Spawn))),
        (
            "command_bin_true",
            Box::new(move || {
                let _ = &me2;
                command(std::path::Path::new("/bin/true"), None)
            }),
        ),
    ]
}

fn median_us(f: &dyn Fn(), iters: usize) -> f64 {
    for _ in 0..iters.div_ceil(10) {
        f();
    }
    let mut v: Vec<f64> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

const PYTHON: &str = r#"
import multiprocessing as mp, statistics, sys, time

def noop():
    pass

if __name__ == "__main__":
    for method, n in [("fork", 200), ("forkserver", 60), ("spawn", 20)]:
        ctx = mp.get_context(method)
        p = ctx.Process(target=noop); p.start(); p.join()
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            p = ctx.Process(target=noop)
            p.start()
            p.join()
            ts.append(time.perf_counter() - t)
        print(method, statistics.median(ts) * 1e6, flush=True)
"#;

/// Python's start + join medians in microseconds, by method.
fn python_figures() -> Option<Vec<(String, f64)>> {
    let path =
        std::env::temp_dir().join(format!("multiproc_process_start_{}.py", std::process::id()));
    std::fs::write(&path, PYTHON).ok()?;
    let out = Command::new("python3")
        .arg(&path)
        .stderr(Stdio::inherit())
        .output();
    let _ = std::fs::remove_file(&path);
    let out = out.ok().filter(|o| o.status.success())?;
    let text = String::from_utf8(out.stdout).ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                let (m, v) = l.split_once(' ')?;
                Some((m.to_owned(), v.trim().parse().ok()?))
            })
            .collect(),
    )
}

/// The criterion filter (first argument that is not a flag), if any.
fn filter() -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--bench" {
            continue;
        }
        if a.starts_with("--") {
            // Flags with a value (criterion's `--warm-up-time 1`).
            if !a.contains('=')
                && matches!(
                    a.as_str(),
                    "--warm-up-time"
                        | "--measurement-time"
                        | "--sample-size"
                        | "--save-baseline"
                        | "--baseline"
                        | "--profile-time"
                        | "--noise-threshold"
                        | "--significance-level"
                        | "--confidence-level"
                        | "--nresamples"
                        | "--output-format"
                        | "--color"
                        | "--format"
                )
            {
                args.next();
            }
            continue;
        }
        return Some(a);
    }
    None
}

/// Median of `iters` runs of `f`, in microseconds.
fn median_of(iters: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What a fork start does beyond `fork` + `waitpid`, each piece timed
/// alone in this process (medians, us): the system calls of
/// `alloc-ext/src/process/fork.rs` and `child.rs`, the `/proc` read a
/// child makes to learn its own identity (start time) for the queues'
/// peer tables, and one copy-on-write fault (a child writing one page of
/// its parent's memory).
fn pieces() {
    println!("\npieces of a fork start beyond fork + waitpid, medians (us):");
    let row = |name: &str, us: f64| println!("  {name:<40} {us:>8.2}");
    row(
        "pipe2 + 2 x close (result pipe)",
        median_of(2000, || {
            let mut fds = [0; 2];
            // SAFETY: a valid out-array of two descriptors, closed at once.
            unsafe {
                assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
                libc::close(fds[0]);
                libc::close(fds[1]);
            }
        }),
    );
    row(
        "pidfd_open + close",
        median_of(2000, || {
            // SAFETY: pidfd_open of this process; the descriptor is closed.
            unsafe {
                let fd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0);
                if fd >= 0 {
                    libc::close(fd as i32);
                }
            }
        }),
    );
    row(
        "stat /proc/self/task (thread count)",
        median_of(2000, || {
            black_box(std::fs::metadata("/proc/self/task").ok());
        }),
    );
    row(
        "read /proc/self/stat (own start time)",
        median_of(2000, || {
            black_box(std::fs::read("/proc/self/stat").ok());
        }),
    );
    row(
        "getpid",
        median_of(2000, || {
            black_box(std::process::id());
        }),
    );
    // One page written by the child: the difference of two bare forks.
    let page = vec![1u8; 3 * 4096];
    let at = (page.as_ptr() as usize + 4095) & !4095;
    let fork_writing = |pages: usize| {
        median_of(300, || {
            // SAFETY: the child only writes bytes of its own copy of
            // `page` (inside the vector) and calls _exit.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                for i in 0..pages {
                    // SAFETY: as above, within the vector.
                    unsafe { std::ptr::write_volatile((at + i * 4096) as *mut u8, 2) };
                }
                // SAFETY: leaves the child at once.
                unsafe { libc::_exit(0) };
            }
            let mut status = 0;
            // SAFETY: waiting for our own child with a valid out-pointer.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        })
    };
    let (none, two) = (fork_writing(0), fork_writing(2));
    row("copy-on-write fault (child, per page)", (two - none) / 2.0);
}

/// `a` and `b` timed in alternation, `n` pairs: the median of the
/// per-pair ratios `a / b`, with its quartiles. On a VM whose speed swings
/// between runs (the fork pair here moved 0.84x-2.0x between criterion
/// runs), each pair sees the same machine, so the ratio holds where two
/// medians taken a second apart do not.
fn paired_ratio(n: usize, a: impl Fn(), b: impl Fn()) -> (f64, f64, f64) {
    let time = |f: &dyn Fn()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    for _ in 0..n.div_ceil(10) {
        a();
        b();
    }
    let mut ratios: Vec<f64> = (0..n.max(4))
        .map(|i| {
            // Alternate which runs first, so neither always follows the other.
            if i % 2 == 0 {
                let ta = time(&a);
                ta / time(&b)
            } else {
                let tb = time(&b);
                time(&a) / tb
            }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let at = |q: usize| ratios[ratios.len() * q / 4];
    (at(2), at(1), at(3))
}

fn summary() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 4 } else { 1 };
    // A filtered run (`-- multiproc_fork`) measures the fork rows only.
    let filtered = filter().is_some();
    println!("\nprocess start + join, medians of one run (us):");
    let mut med = std::collections::HashMap::new();
    for (name, f) in cases() {
        if filtered && !name.contains("fork") {
            continue;
        }
        let iters = if name.contains("spawn") || name.contains("command") {
            200
        } else {
            1000
        } / scale;
        let m = median_us(&*f, iters);
        println!("  {name:<22} {m:>10.1}");
        med.insert(name, m);
    }
    let get = |k: &str| med.get(k).copied().unwrap_or(f64::NAN);
    let r = |a: &str, b: &str| get(a) / get(b);
    println!("\nratios (target):");
    println!(
        "  multiproc_fork / bare_fork_waitpid        {:>5.2}  (<= 1.5)",
        r("multiproc_fork", "bare_fork_waitpid")
    );
    let (paired, lo, hi) = paired_ratio(1000 / scale, mp_fork, bare_fork);
    println!(
        "  the same, alternated pairs                {paired:>5.2}  (<= 1.5; quartiles {lo:.2}-{hi:.2})"
    );
    println!(
        "  multiproc_spawn / command_rerun_self      {:>5.2}  (<= 1.5)",
        r("multiproc_spawn", "command_rerun_self")
    );
    println!(
        "  multiproc_forkserver / bare_fork_waitpid  {:>5.2}  (<= 3.0)",
        r("multiproc_forkserver", "bare_fork_waitpid")
    );
    pieces();
    if filtered {
        return;
    }
    match python_figures() {
        Some(py) => {
            println!("\nPython multiprocessing.Process start + join, medians (us), and speed-up (target >= 10x):");
            for (method, us) in py {
                let ours = match method.as_str() {
                    "fork" => med["multiproc_fork"],
                    "spawn" => med["multiproc_spawn"],
                    "forkserver" => med["multiproc_forkserver"],
                    _ => continue,
                };
                println!(
                    "  {method:<11} python {us:>10.1}   multiproc {ours:>8.1}   {:>6.1}x",
                    us / ours
                );
            }
        }
        None => println!("\n(python3 not available: no Python figures)"),
    }
}

fn main() {
    // The bare re-run of this binary: leave before anything else.
    if std::env::args().nth(1).as_deref() == Some("--exit-now") {
        return;
    }
    multiproc::register_entry("noop", noop).unwrap();
    multiproc::init();

    // Start the fork server before measuring.
    mp_entry(StartMethod::Forkserver);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("process_start_join");
        for (name, f) in cases() {
            if name.contains("spawn") || name.contains("command") {
                g.sample_size(30);
            } else {
                g.sample_size(100);
            }
            g.bench_function(name, |b| b.iter(&*f));
        }
        g.finish();
    }
    c.final_summary();
    summary();
}
