//! Tests of `multiproc::mpi::Pool` under `mpirun`.
//!
//! Without arguments (or with `run`), this is the harness: it launches
//! `mpirun ... <this binary> check <scenario>` for every scenario at
//! `-np 2` and `-np 3`, each under a watchdog (the whole `mpirun` process
//! group is killed and the test fails if it has not ended in time), and
//! checks the exit status and the master's `ok <scenario>` line. With
//! `check <scenario>`, it is the MPI program of that scenario (every rank
//! runs it; rank 0 checks and prints).
//!
//! Scenarios:
//! - `basic`: a 100k-item `map` and `imap_unordered` equal to the local
//!   Pool's results; `imap`, `starmap`, `starmap3`, `apply_async`,
//!   `map_async`, chunksizes; serde items (strings, vectors, structs); a
//!   panicking task fails alone.
//!   Cheap tasks run in the ranks themselves (the inline budget), slow ones
//!   on their local pools.
//! - `inline`: the same calls with ranks that run tasks themselves.
//! - `shipped`: the same calls with every task on the ranks' local pools
//!   (`inline_below(0)`), which get the chunks' bytes as they are, cut to
//!   a small `max_message`; an item larger than that fails alone.
//! - `lost-fail`: a local worker SIGKILLed inside a rank fails only its
//!   task (`WorkerLost`, signal 9); the rank goes on.
//! - `lost-retry`: the same with `LostTasks::Retry(1)`: the item runs
//!   again and succeeds.
//! - `kill-rank`: the master SIGKILLs a worker rank during a map: the job
//!   must end non-zero (the harness times it from the kill).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use multiproc::mpi::{LostTasks, Pool, TaskError};
use serde::{Deserialize, Serialize};

fn mix(x: u64) -> u64 {
    // splitmix64: results that a wrong index or a lost item would show.
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Particle {
    name: String,
    pos: [f64; 3],
    tags: Vec<u32>,
    parent: Option<Box<Particle>>,
}

fn step(mut p: Particle) -> Particle {
    for x in &mut p.pos {
        *x *= 2.0;
    }
    p.tags.push(p.tags.len() as u32);
    p.name = p.name.to_uppercase();
    p
}

fn words(s: String) -> Vec<String> {
    s.split_whitespace()
        .map(|w| w.chars().rev().collect())
        .collect()
}

fn sum_vec(v: Vec<i64>) -> i64 {
    v.iter().sum()
}

fn join3(a: String, b: u32, c: Vec<u8>) -> String {
    format!("{a}-{b}-{}", c.len())
}

fn powi(base: u64, exp: u32) -> u64 {
    base.wrapping_pow(exp)
}

fn picky(x: u32) -> u32 {
    if x == 5 {
        panic!("five is not allowed");
    }
    x + 1
}

/// Kills its own process (a local worker) with SIGKILL for item 7 (once
/// per marker file, if `MPI_TEST_MARKER` is set: the retry then succeeds).
fn doomed(x: u32) -> u32 {
    if x == 7 {
        let first = match std::env::var("MPI_TEST_MARKER") {
            Ok(path) => std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .is_ok(),
            Err(_) => true,
        };
        if first {
            // SAFETY: kill(2) on this process's own pid.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
    x * 10
}

fn nap(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(1));
    x ^ 0x55
}

fn slow(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    x
}

fn check(cond: bool, what: &str) -> Result<(), String> {
    if cond {
        println!("  checked: {what}");
        Ok(())
    } else {
        Err(format!("check failed: {what}"))
    }
}

fn particles(n: usize) -> Vec<Particle> {
    (0..n)
        .map(|i| Particle {
            name: format!("p{i}"),
            pos: [i as f64, -(i as f64), 0.5],
            tags: (0..(i % 5) as u32).collect(),
            parent: (i % 3 == 0).then(|| {
                Box::new(Particle {
                    name: "root".into(),
                    pos: [0.0; 3],
                    tags: vec![],
                    parent: None,
                })
            }),
        })
        .collect()
}

/// The calls every "results" scenario checks.
fn calls(pool: &Pool) -> Result<(), String> {
    let e = |e: multiproc::mpi::PoolError| e.to_string();
    // The local Pool on this machine is the reference.
    let local = multiproc::pool::Pool::builder()
        .workers(2)
        .start_method(multiproc::StartMethod::Spawn)
        .build()
        .map_err(e)?;
    let items: Vec<u64> = (0..100_000).collect();
    let want = local.map(mix, items.clone()).map_err(e)?;
    check(
        want == items.iter().map(|&x| mix(x)).collect::<Vec<_>>(),
        "local reference",
    )?;
    let got = pool.map(mix, items.clone()).map_err(e)?;
    check(got == want, "100k map, default chunksize")?;
    let got = pool.chunksize(777).map(mix, items.clone()).map_err(e)?;
    check(got == want, "100k map, chunksize 777")?;
    let mut un: Vec<u64> = pool
        .chunksize(50)
        .imap_unordered(mix, items.clone())
        .map_err(e)?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut want_sorted = local
        .chunksize(50)
        .imap_unordered(mix, items.clone())
        .map_err(e)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    un.sort_unstable();
    want_sorted.sort_unstable();
    check(un == want_sorted, "100k imap_unordered (chunks of 50)")?;
    let un1: Vec<u64> = pool
        .imap_unordered(mix, 0..2_000u64)
        .map_err(e)?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut un1s = un1.clone();
    un1s.sort_unstable();
    let mut w: Vec<u64> = want[..2000].to_vec();
    w.sort_unstable();
    check(un1s == w, "2k imap_unordered (chunks of 1)")?;
    let ordered: Vec<u64> = pool
        .imap(mix, 0..3_000u64)
        .map_err(e)?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    check(ordered == want[..3000], "imap in order")?;
    // Serde items: structs, strings, vectors.
    let ps = particles(500);
    let got = pool.map(step, ps.clone()).map_err(e)?;
    check(
        got == local.map(step, ps).map_err(e)?,
        "structs through map",
    )?;
    let texts: Vec<String> = (0..300)
        .map(|i| format!("alpha {i} beta gamma{i}"))
        .collect();
    check(
        pool.map(words, texts.clone()).map_err(e)? == local.map(words, texts).map_err(e)?,
        "strings to vectors",
    )?;
    let vecs: Vec<Vec<i64>> = (0..300).map(|i| (0..i).collect()).collect();
    check(
        pool.map(sum_vec, vecs.clone()).map_err(e)? == local.map(sum_vec, vecs).map_err(e)?,
        "vectors",
    )?;
    let pairs: Vec<(u64, u32)> = (0..1000).map(|i| (i, (i % 7) as u32)).collect();
    check(
        pool.starmap(powi, pairs.clone()).map_err(e)? == local.starmap(powi, pairs).map_err(e)?,
        "starmap",
    )?;
    let triples: Vec<(String, u32, Vec<u8>)> = (0..100)
        .map(|i| (format!("t{i}"), i, vec![0u8; i as usize]))
        .collect();
    check(
        pool.starmap3(join3, triples.clone()).map_err(e)?
            == local.starmap3(join3, triples).map_err(e)?,
        "starmap3",
    )?;
    let a = pool.apply_async(mix, 42).map_err(e)?;
    let b = pool.map_async(mix, 0..10u64).map_err(e)?;
    check(a.get().map_err(e)? == mix(42), "apply_async")?;
    check(b.get().map_err(e)? == want[..10], "map_async")?;
    check(
        pool.apply(|s: String| s.len(), "four".to_string())
            .map_err(e)?
            == 4,
        "apply closure",
    )?;
    // A panic fails its item alone.
    let r = pool.chunksize(3).map_results(picky, 0..10u32).map_err(e)?;
    for (i, o) in r.iter().enumerate() {
        if i == 5 {
            check(
                matches!(o, Err(TaskError::Panicked(m)) if m.contains("five is not allowed")),
                "the panic is item 5's",
            )?;
        } else {
            check(o.as_ref().ok() == Some(&(i as u32 + 1)), "the other items")?;
        }
    }
    check(
        matches!(
            pool.map(picky, 0..10u32),
            Err(multiproc::mpi::PoolError::Task { index: 5, .. })
        ),
        "map returns the first failure",
    )?;
    // Slow tasks: the first item of a chunk measures them in the rank, the
    // rest goes to the local pool, cut for its idle workers.
    let got = pool.chunksize(16).map(nap, 0..128u64).map_err(e)?;
    check(
        got == (0..128u64).map(|x| x ^ 0x55).collect::<Vec<_>>(),
        "slow tasks through the local pools",
    )?;
    let empty: Vec<u64> = pool.map(mix, Vec::new()).map_err(e)?;
    check(empty.is_empty(), "empty map")?;
    Ok(())
}

fn lost(pool: &Pool, retry: bool) -> Result<(), String> {
    let r = pool
        .chunksize(1)
        .map_results(doomed, 0..20u32)
        .map_err(|e| e.to_string())?;
    for (i, o) in r.iter().enumerate() {
        if i == 7 && !retry {
            check(
                matches!(
                    o,
                    Err(TaskError::WorkerLost {
                        exitcode: Some(-9),
                        ..
                    })
                ),
                &format!("item 7 lost to SIGKILL, got {o:?}"),
            )?;
        } else {
            check(
                o.as_ref().ok() == Some(&(i as u32 * 10)),
                &format!("item {i}: {o:?}"),
            )?;
        }
    }
    // The rank goes on.
    let again = pool.map(mix, 0..1000u64).map_err(|e| e.to_string())?;
    check(
        again == (0..1000).map(mix).collect::<Vec<_>>(),
        "the rank goes on",
    )
}

fn kill_rank(pool: &Pool) -> Result<(), String> {
    let victim = pool.ranks().last().ok_or("no rank")?.clone();
    let job = pool
        .chunksize(1)
        .map_async(slow, 0..100_000u64)
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs_f64();
    if let Ok(path) = std::env::var("MPI_TEST_KILL_STAMP") {
        std::fs::write(path, format!("{stamp}")).map_err(|e| e.to_string())?;
    }
    println!(
        "killing rank {} (pid {}) with SIGKILL",
        victim.rank, victim.pid
    );
    let _ = std::io::stdout().flush();
    // SAFETY: kill(2) of the victim rank's process, on this machine.
    unsafe {
        libc::kill(victim.pid as i32, libc::SIGKILL);
    }
    // The job must end here (mpirun kills this rank); waiting is all that
    // is left.
    let r = job.get();
    Err(format!(
        "the job went on after a rank died: {:?}",
        r.map(|v| v.len())
    ))
}

fn scenario(name: &str) -> Result<(), String> {
    let builder = Pool::builder();
    let builder = match name {
        "inline" => builder.local_workers(0),
        "shipped" => builder.inline_below(Duration::ZERO).max_message(4096),
        // The doomed task must run in a local worker, not in the rank.
        "lost-retry" => builder
            .local_workers(2)
            .inline_below(Duration::ZERO)
            .lost_tasks(LostTasks::Retry(1)),
        "lost-fail" => builder.local_workers(2).inline_below(Duration::ZERO),
        _ => builder,
    };
    let mut pool = builder.build().map_err(|e| e.to_string())?;
    // Only rank 0 gets here.
    println!("ranks: {:?}", pool.ranks());
    match name {
        "basic" | "inline" => calls(&pool)?,
        "shipped" => {
            calls(&pool)?;
            let r = pool
                .map_results(|v: Vec<u8>| v.len(), vec![vec![7u8; 10_000], vec![1]])
                .map_err(|e| e.to_string())?;
            check(
                matches!(r[0], Err(TaskError::ItemTooLarge { .. })) && r[1] == Ok(1),
                &format!("a too large item fails alone: {r:?}"),
            )?;
        }
        "lost-fail" => lost(&pool, false)?,
        "lost-retry" => lost(&pool, true)?,
        "kill-rank" => kill_rank(&pool)?,
        other => return Err(format!("unknown scenario {other}")),
    }
    pool.close();
    pool.join().map_err(|e| e.to_string())?;
    println!("ok {name}");
    Ok(())
}

/// One `mpirun` launch of a scenario, under a watchdog.
struct Launch {
    np: u32,
    scenario: &'static str,
    transport: &'static str,
    expect_ok: bool,
}

fn mpirun_args(np: u32, transport: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "--allow-run-as-root",
        "--oversubscribe",
        "--bind-to",
        "none",
        "-np",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(np.to_string());
    a.extend(
        ["--mca", "oob_tcp_if_include", "lo"]
            .iter()
            .map(|s| s.to_string()),
    );
    match transport {
        "tcp" => a.extend(
            [
                "--mca",
                "btl",
                "self,tcp",
                "--mca",
                "btl_tcp_if_include",
                "lo",
            ]
            .iter()
            .map(|s| s.to_string()),
        ),
        _ => a.extend(["--mca", "btl", "self,vader"].iter().map(|s| s.to_string())),
    }
    a
}

fn run_launch(l: &Launch, watchdog: Duration) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!(
        "mpi-test-{}-{}-{}",
        std::process::id(),
        l.scenario,
        l.np
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let stamp = dir.join("kill-stamp");
    let mut cmd = Command::new("mpirun");
    cmd.args(mpirun_args(l.np, l.transport))
        .arg(&exe)
        .args(["check", l.scenario])
        .env("MPI_TEST_KILL_STAMP", &stamp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if l.scenario == "lost-retry" {
        cmd.env("MPI_TEST_MARKER", dir.join("marker"));
    }
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot run mpirun: {e}"))?;
    let pgid = child.id() as i32;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if start.elapsed() > watchdog {
            // mpirun kills its ranks (each in a group of its own) on
            // SIGTERM; then the group, whatever is left of it.
            // SAFETY: kill(2) of the mpirun this harness started, then of
            // the process group it made for it.
            unsafe {
                libc::kill(pgid, libc::SIGTERM);
            }
            std::thread::sleep(Duration::from_secs(3));
            // SAFETY: as above.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let _ = child.wait();
            return Err(format!(
                "watchdog: np={} {} still running after {watchdog:?}; killed",
                l.np, l.scenario
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let ended = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs_f64();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let elapsed = start.elapsed();
    let ok_line = format!("ok {}", l.scenario);
    if l.expect_ok {
        if !status.success() || !stdout.contains(&ok_line) {
            return Err(format!(
                "np={} {} failed ({status}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                l.np, l.scenario
            ));
        }
        println!(
            "  ok   np={} {:10} {:5} in {:.2} s",
            l.np,
            l.scenario,
            l.transport,
            elapsed.as_secs_f64()
        );
    } else {
        let killed_at: f64 = std::fs::read_to_string(&stamp)
            .map_err(|e| format!("the master did not kill a rank ({e}):\n{stdout}\n{stderr}"))?
            .trim()
            .parse()
            .map_err(|e| format!("bad stamp: {e}"))?;
        if status.success() {
            return Err(format!(
                "the job exited 0 after a rank was killed:\n{stdout}\n{stderr}"
            ));
        }
        let msg = stderr
            .lines()
            .chain(stdout.lines())
            .find(|s| s.contains("signal 9") || s.contains("Killed"))
            .unwrap_or("(no message naming the signal)");
        if !msg.contains("rank") && !stderr.contains("rank") {
            return Err(format!("no message names the dead rank:\n{stderr}"));
        }
        println!(
            "  ok   np={} {:10} {:5} job ended {status} {:.2} s after the SIGKILL; mpirun said: {}",
            l.np,
            l.scenario,
            l.transport,
            ended - killed_at,
            msg.trim()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn harness() -> ExitCode {
    let mut launches = Vec::new();
    for np in [2, 3] {
        for scenario in ["basic", "inline", "shipped", "lost-fail", "lost-retry"] {
            launches.push(Launch {
                np,
                scenario,
                transport: "vader",
                expect_ok: true,
            });
        }
        launches.push(Launch {
            np,
            scenario: "kill-rank",
            transport: "vader",
            expect_ok: false,
        });
    }
    launches.push(Launch {
        np: 2,
        scenario: "basic",
        transport: "tcp",
        expect_ok: true,
    });
    let only: Vec<String> = std::env::args().skip(2).collect();
    let mut failed = 0;
    for l in launches
        .iter()
        .filter(|l| only.is_empty() || only.iter().any(|o| o == l.scenario))
    {
        if let Err(e) = run_launch(l, Duration::from_secs(120)) {
            println!("  FAIL {e}");
            failed += 1;
        }
    }
    if failed == 0 {
        println!("mpi tests: all passed");
        ExitCode::SUCCESS
    } else {
        println!("mpi tests: {failed} failed");
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    // The local reference Pool uses the spawn start method.
    multiproc::init();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("check") => {
            let name = args.get(2).map(String::as_str).unwrap_or("basic");
            match scenario(name) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("scenario {name}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None | Some("run") => harness(),
        Some(other) => {
            eprintln!(
                "usage: multiproc-mpi-tests [run [scenario...] | check <scenario>]; not {other}"
            );
            ExitCode::FAILURE
        }
    }
}
