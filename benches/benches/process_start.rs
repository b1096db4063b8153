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
//! prints the ratios the project targets (fork within 2x the bare fork,
//! spawn within 1.5x the bare re-run, forkserver within 3x the bare fork)
//! and, when python3 is present, Python's `multiprocessing.Process`
//! start + join for each start method (timed inside Python).
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

fn summary() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 4 } else { 1 };
    println!("\nprocess start + join, medians of one run (us):");
    let mut med = std::collections::HashMap::new();
    for (name, f) in cases() {
        let iters = if name.contains("spawn") || name.contains("command") {
            200
        } else {
            1000
        } / scale;
        let m = median_us(&*f, iters);
        println!("  {name:<22} {m:>10.1}");
        med.insert(name, m);
    }
    let r = |a: &str, b: &str| med[a] / med[b];
    println!("\nratios (target):");
    println!(
        "  multiproc_fork / bare_fork_waitpid        {:>5.2}  (<= 2.0)",
        r("multiproc_fork", "bare_fork_waitpid")
    );
    println!(
        "  multiproc_spawn / command_rerun_self      {:>5.2}  (<= 1.5)",
        r("multiproc_spawn", "command_rerun_self")
    );
    println!(
        "  multiproc_forkserver / bare_fork_waitpid  {:>5.2}  (<= 3.0)",
        r("multiproc_forkserver", "bare_fork_waitpid")
    );
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
