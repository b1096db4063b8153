//! `multiproc::pool::Pool` side by side with its peers, in one run (issue
//! 14's "Benchmarks"), 2 workers everywhere.
//!
//! ```sh
//! cargo bench -p multiproc-benches --bench pool -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! | group | contenders |
//! |---|---|
//! | `pool_map_trivial` | 100k calls of `x + 1`: multiproc `map` with chunksize 1 and with the default chunking; rayon `par_iter` on a 2-thread pool (the in-process ceiling), default splitting and one item per job; procspawn `Pool::spawn` + `join` per task over 2 000 tasks (it has no `map`: all spawned, then all joined) |
//! | `pool_imap_unordered_cs64` | 100k calls of `x + 1` through multiproc `imap_unordered`, chunksize 64, collected |
//! | `pool_apply` | one trivial task and its result: multiproc `apply`; procspawn `spawn` + `join` |
//! | `pool_map_primes` | PEP 371's sum of the primes below 100 000, once per item, 32 and 256 items: multiproc `map`, rayon, procspawn |
//!
//! Python's `multiprocessing.Pool` runs the same figures in
//! `python/pool_bench.py` (median of 5 runs, 3 for the slow ones), after
//! criterion, once the Rust pools are gone; `POOL_BENCH_SKIP_PYTHON=1`
//! skips it. The summary at the end takes each Rust figure from criterion's
//! own samples (the median time per iteration over every sample, warm-up
//! included) and prints it with its ratio against each peer and the
//! issue's targets. Because criterion measures the contenders seconds
//! apart and the machine may be shared, the summary also runs the primes
//! map of multiproc and rayon in alternation (7 rounds of 32 items, 3 of
//! 256; about 6 s) and prints those ratios, and the load average before
//! and after.
//!
//! The multiproc pool uses the `fork` start method, which needs the process
//! to have no other thread when the pool is made: it is made first, before
//! rayon's and procspawn's pools start their threads.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use multiproc::pool::Pool;
use multiproc_benches::{crunch_primes, PRIME_LIMIT, PRIME_SUM};
use rayon::prelude::*;

/// Workers (and rayon threads) everywhere.
const WORKERS: usize = 2;
/// Trivial tasks per `map` / `imap_unordered` call.
const TRIVIAL: u64 = 100_000;
/// Trivial tasks per procspawn iteration (about 20k/s: 100k would take
/// five seconds an iteration).
const PROCSPAWN_TRIVIAL: u64 = 2_000;
/// Items of the CPU-heavy map (each one sum of primes below 100 000).
const PRIME_ITEMS: [u64; 2] = [32, 256];

/// The trivial task.
fn inc(x: u64) -> u64 {
    x + 1
}

/// The CPU-heavy task: PEP 371's `crunch_primes`, whatever the item.
fn prime_sum(_item: u64) -> u64 {
    crunch_primes(black_box(PRIME_LIMIT))
}

/// `0..TRIVIAL` as rayon's indexed (so `collect`s in place) range: a
/// range of `u64` is not an `IndexedParallelIterator`.
fn trivial_range() -> std::ops::Range<usize> {
    0..TRIVIAL as usize
}

/// `inc` for rayon's `usize` items.
fn inc_usize(x: usize) -> u64 {
    inc(x as u64)
}

/// Sum of `inc` over `0..n`.
fn trivial_sum(n: u64) -> u64 {
    n * (n - 1) / 2 + n
}

// --- figures recorded from criterion's samples -------------------------------

/// Per figure: every `iter_custom` call's time per iteration.
static SAMPLES: Mutex<BTreeMap<&'static str, Vec<Duration>>> = Mutex::new(BTreeMap::new());

/// Times `iters` runs of `f` (whose result `check` looks at outside the
/// clock) and records the time per iteration under `key`.
fn timed<R>(
    key: &'static str,
    iters: u64,
    mut f: impl FnMut() -> R,
    check: impl Fn(R),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t = Instant::now();
        let r = black_box(f());
        total += t.elapsed();
        check(r);
    }
    let per = total / u32::try_from(iters.max(1)).unwrap_or(u32::MAX);
    SAMPLES.lock().unwrap().entry(key).or_default().push(per);
    total
}

/// The median time per iteration of `key`, in seconds.
fn median(key: &str) -> Option<f64> {
    let s = SAMPLES.lock().unwrap();
    let mut v: Vec<f64> = s.get(key)?.iter().map(Duration::as_secs_f64).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

// --- the peers -----------------------------------------------------------------

/// The three pools, made in the order the fork start method needs.
struct Pools {
    multiproc: Pool,
    rayon: rayon::ThreadPool,
    procspawn: procspawn::Pool,
}

impl Pools {
    fn new() -> Pools {
        let multiproc = Pool::new(WORKERS).expect("multiproc pool");
        // The first calls start nothing new: the workers are up; this warms
        // their rings and checks the results once in full.
        let want: Vec<u64> = (1..=TRIVIAL).collect();
        assert_eq!(multiproc.chunksize(1).map(inc, 0..TRIVIAL).unwrap(), want);
        assert_eq!(multiproc.map(inc, 0..TRIVIAL).unwrap(), want);
        let rayon = rayon::ThreadPoolBuilder::new()
            .num_threads(WORKERS)
            .build()
            .expect("rayon pool");
        let procspawn = procspawn::Pool::new(WORKERS).expect("procspawn pool");
        assert_eq!(procspawn.spawn(41, inc).join().unwrap(), 42);
        Pools {
            multiproc,
            rayon,
            procspawn,
        }
    }

    /// procspawn's nearest thing to `map`: spawn every task, then join
    /// them in order.
    fn procspawn_map(&self, f: fn(u64) -> u64, n: u64) -> Vec<u64> {
        let handles: Vec<_> = (0..n).map(|i| self.procspawn.spawn(i, f)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }
}

fn check_trivial(n: u64) -> impl Fn(Vec<u64>) {
    move |v| {
        assert_eq!(v.len() as u64, n);
        assert_eq!(v.iter().sum::<u64>(), trivial_sum(n));
    }
}

fn check_primes(n: u64) -> impl Fn(Vec<u64>) {
    move |v| {
        assert_eq!(v.len() as u64, n);
        assert!(v.iter().all(|&s| s == PRIME_SUM));
    }
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    // Each iteration is at least tens of milliseconds: criterion's default
    // 100 samples would take minutes.
    g.sample_size(10);
    g
}

fn map_trivial(c: &mut Criterion, p: &Pools) {
    let mut g = group(c, "pool_map_trivial");
    g.throughput(Throughput::Elements(TRIVIAL));
    g.bench_function("multiproc/chunksize_1", |b| {
        b.iter_custom(|n| {
            timed(
                "mp_map_cs1",
                n,
                || p.multiproc.chunksize(1).map(inc, 0..TRIVIAL).unwrap(),
                check_trivial(TRIVIAL),
            )
        })
    });
    g.bench_function("multiproc/default_chunking", |b| {
        b.iter_custom(|n| {
            timed(
                "mp_map_default",
                n,
                || p.multiproc.map(inc, 0..TRIVIAL).unwrap(),
                check_trivial(TRIVIAL),
            )
        })
    });
    g.bench_function("rayon/par_iter", |b| {
        b.iter_custom(|n| {
            timed(
                "rayon_map",
                n,
                || {
                    p.rayon.install(|| {
                        trivial_range()
                            .into_par_iter()
                            .map(inc_usize)
                            .collect::<Vec<_>>()
                    })
                },
                check_trivial(TRIVIAL),
            )
        })
    });
    g.bench_function("rayon/par_iter_max_len_1", |b| {
        b.iter_custom(|n| {
            timed(
                "rayon_map_len1",
                n,
                || {
                    p.rayon.install(|| {
                        trivial_range()
                            .into_par_iter()
                            .with_max_len(1)
                            .map(inc_usize)
                            .collect::<Vec<_>>()
                    })
                },
                check_trivial(TRIVIAL),
            )
        })
    });
    g.throughput(Throughput::Elements(PROCSPAWN_TRIVIAL));
    g.bench_function("procspawn/spawn_join_2000", |b| {
        b.iter_custom(|n| {
            timed(
                "procspawn_map",
                n,
                || p.procspawn_map(inc, PROCSPAWN_TRIVIAL),
                check_trivial(PROCSPAWN_TRIVIAL),
            )
        })
    });
    g.finish();
}

fn imap_unordered(c: &mut Criterion, p: &Pools) {
    let mut g = group(c, "pool_imap_unordered_cs64");
    g.throughput(Throughput::Elements(TRIVIAL));
    g.bench_function("multiproc", |b| {
        b.iter_custom(|n| {
            timed(
                "mp_imap_cs64",
                n,
                || {
                    p.multiproc
                        .chunksize(64)
                        .imap_unordered(inc, 0..TRIVIAL)
                        .unwrap()
                        .map(Result::unwrap)
                        .collect::<Vec<_>>()
                },
                check_trivial(TRIVIAL),
            )
        })
    });
    g.finish();
}

fn apply(c: &mut Criterion, p: &Pools) {
    let mut g = c.benchmark_group("pool_apply");
    g.bench_function("multiproc", |b| {
        b.iter_custom(|n| {
            timed(
                "mp_apply",
                n,
                || p.multiproc.apply(inc, black_box(1)).unwrap(),
                |r| assert_eq!(r, 2),
            )
        })
    });
    g.bench_function("procspawn/spawn_join", |b| {
        b.iter_custom(|n| {
            timed(
                "procspawn_apply",
                n,
                || p.procspawn.spawn(black_box(1), inc).join().unwrap(),
                |r| assert_eq!(r, 2),
            )
        })
    });
    g.finish();
}

/// Summary keys of the CPU-heavy figures, per item count.
fn primes_key(who: &str, items: u64) -> &'static str {
    match (who, items) {
        ("mp", 32) => "mp_primes_32",
        ("mp", 256) => "mp_primes_256",
        ("rayon", 32) => "rayon_primes_32",
        ("rayon", 256) => "rayon_primes_256",
        ("procspawn", 32) => "procspawn_primes_32",
        ("procspawn", 256) => "procspawn_primes_256",
        _ => unreachable!("no key for {who} x{items}"),
    }
}

fn map_primes(c: &mut Criterion, p: &Pools) {
    let mut g = group(c, "pool_map_primes");
    // 256 items take most of a second: one iteration per sample.
    g.sampling_mode(SamplingMode::Flat);
    for items in PRIME_ITEMS {
        g.throughput(Throughput::Elements(items));
        g.bench_function(format!("multiproc/{items}"), |b| {
            b.iter_custom(|n| {
                timed(
                    primes_key("mp", items),
                    n,
                    || p.multiproc.map(prime_sum, 0..items).unwrap(),
                    check_primes(items),
                )
            })
        });
        g.bench_function(format!("rayon/{items}"), |b| {
            b.iter_custom(|n| {
                timed(
                    primes_key("rayon", items),
                    n,
                    || {
                        p.rayon.install(|| {
                            (0..items as usize)
                                .into_par_iter()
                                .map(|i| prime_sum(i as u64))
                                .collect::<Vec<_>>()
                        })
                    },
                    check_primes(items),
                )
            })
        });
        g.bench_function(format!("procspawn/{items}"), |b| {
            b.iter_custom(|n| {
                timed(
                    primes_key("procspawn", items),
                    n,
                    || p.procspawn_map(prime_sum, items),
                    check_primes(items),
                )
            })
        });
    }
    g.finish();
}

/// The CPU-heavy map, multiproc and rayon measured in alternation (the
/// order swapped every round), so that a neighbour's load on this shared
/// machine falls on both alike: criterion runs one contender after the
/// other, seconds apart.
struct Paired {
    items: u64,
    /// Wall times in milliseconds, one per round.
    multiproc: Vec<f64>,
    rayon: Vec<f64>,
}

impl Paired {
    /// Best and median of a contender's rounds.
    fn best_median(v: &[f64]) -> (f64, f64) {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    }
}

fn paired_primes(p: &Pools) -> Vec<Paired> {
    [(32, 7), (256, 3)]
        .into_iter()
        .map(|(items, rounds)| {
            let mut out = Paired {
                items,
                multiproc: Vec::new(),
                rayon: Vec::new(),
            };
            let ms = |f: &dyn Fn() -> Vec<u64>| {
                let t = Instant::now();
                let v = f();
                let el = t.elapsed().as_secs_f64() * 1e3;
                check_primes(items)(v);
                el
            };
            let mp = || p.multiproc.map(prime_sum, 0..items).unwrap();
            let ry = || {
                p.rayon.install(|| {
                    (0..items as usize)
                        .into_par_iter()
                        .map(|i| prime_sum(i as u64))
                        .collect::<Vec<_>>()
                })
            };
            for round in 0..rounds {
                if round % 2 == 0 {
                    out.multiproc.push(ms(&mp));
                    out.rayon.push(ms(&ry));
                } else {
                    out.rayon.push(ms(&ry));
                    out.multiproc.push(ms(&mp));
                }
            }
            out
        })
        .collect()
}

/// The 1, 5 and 15 minute load averages (the machine is shared: figures
/// taken under load are slower and noisier).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// --- Python and the summary ----------------------------------------------------

fn python() -> Option<serde_json::Value> {
    if std::env::var_os("POOL_BENCH_SKIP_PYTHON").is_some() {
        eprintln!("python: skipped (POOL_BENCH_SKIP_PYTHON set)");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/pool_bench.py");
    eprintln!("python: running {script} (about 20 s)");
    match std::process::Command::new("python3")
        .arg(script)
        .args(["--workers", &WORKERS.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
    {
        Ok(out) if out.status.success() => serde_json::from_slice(&out.stdout)
            .inspect_err(|e| eprintln!("python: unreadable output: {e}"))
            .ok(),
        Ok(out) => {
            eprintln!("python: failed ({})", out.status);
            None
        }
        Err(e) => {
            eprintln!("python: not run ({e})");
            None
        }
    }
}

/// One printed figure: its value and how it compares.
struct Row {
    label: String,
    value: Option<f64>,
    unit: &'static str,
}

fn fmt_value(v: Option<f64>, unit: &str) -> String {
    match (v, unit) {
        (None, _) => "-".into(),
        (Some(v), "tasks/s") if v >= 1e6 => format!("{:.2} M tasks/s", v / 1e6),
        (Some(v), "tasks/s") => format!("{:.1} k tasks/s", v / 1e3),
        (Some(v), "us") => format!("{v:.1} us"),
        (Some(v), "ms") => format!("{v:.1} ms"),
        (Some(v), _) => format!("{v:.3}"),
    }
}

/// `better / worse` as "N.NNx", with the target verdict if any.
fn ratio(label: &str, r: Option<f64>, target: Option<(f64, &str)>) -> String {
    let Some(r) = r else {
        return format!("  {label:<50} -");
    };
    let verdict = match target {
        Some((t, what)) if r >= t => format!("   target {what}: met"),
        Some((_, what)) => format!("   target {what}: MISSED"),
        None => String::new(),
    };
    format!("  {label:<50} {r:>8.2}x{verdict}")
}

fn summary(paired: &[Paired], load_before: &str) {
    let rate = |key: &str, n: u64| median(key).map(|s| n as f64 / s);
    let us = |key: &str| median(key).map(|s| s * 1e6);
    let ms = |key: &str| median(key).map(|s| s * 1e3);
    let mp_cs1 = rate("mp_map_cs1", TRIVIAL);
    let mp_def = rate("mp_map_default", TRIVIAL);
    let rayon_map = rate("rayon_map", TRIVIAL);
    let rayon_len1 = rate("rayon_map_len1", TRIVIAL);
    let ps_map = rate("procspawn_map", PROCSPAWN_TRIVIAL);
    let mp_imap = rate("mp_imap_cs64", TRIVIAL);
    let mp_apply = us("mp_apply");
    let ps_apply = us("procspawn_apply");
    let primes: Vec<_> = PRIME_ITEMS
        .iter()
        .map(|&n| {
            (
                n,
                ms(primes_key("mp", n)),
                ms(primes_key("rayon", n)),
                ms(primes_key("procspawn", n)),
            )
        })
        .collect();
    let any = SAMPLES.lock().map(|s| !s.is_empty()).unwrap_or(false);
    if !any {
        return;
    }
    let py = python();
    let pyf = |k: &str| py.as_ref().and_then(|p| p.get(k)).and_then(|v| v.as_f64());
    let py_cs1 = pyf("map_cs1_tasks_per_s");
    let py_def = pyf("map_default_tasks_per_s");
    let py_imap = pyf("imap_unordered_cs64_tasks_per_s");
    let py_apply = pyf("apply_round_trip_us");
    let py_primes_items = pyf("primes_items").map(|n| n as u64);
    let py_primes = pyf("map_primes_s").map(|s| s * 1e3);
    let py_version = py
        .as_ref()
        .and_then(|p| p.get("python"))
        .and_then(|v| v.as_str())
        .map(str::to_owned);

    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let rows = [
        Row {
            label: "multiproc map, chunksize 1".into(),
            value: mp_cs1,
            unit: "tasks/s",
        },
        Row {
            label: "multiproc map, default chunking".into(),
            value: mp_def,
            unit: "tasks/s",
        },
        Row {
            label: "rayon par_iter (2 threads)".into(),
            value: rayon_map,
            unit: "tasks/s",
        },
        Row {
            label: "rayon par_iter, max_len 1".into(),
            value: rayon_len1,
            unit: "tasks/s",
        },
        Row {
            label: "procspawn spawn+join (2000 tasks)".into(),
            value: ps_map,
            unit: "tasks/s",
        },
        Row {
            label: "python Pool.map, chunksize 1".into(),
            value: py_cs1,
            unit: "tasks/s",
        },
        Row {
            label: "python Pool.map, default chunking".into(),
            value: py_def,
            unit: "tasks/s",
        },
        Row {
            label: "multiproc imap_unordered, chunksize 64".into(),
            value: mp_imap,
            unit: "tasks/s",
        },
        Row {
            label: "python imap_unordered, chunksize 64".into(),
            value: py_imap,
            unit: "tasks/s",
        },
        Row {
            label: "multiproc apply round trip".into(),
            value: mp_apply,
            unit: "us",
        },
        Row {
            label: "procspawn spawn+join round trip".into(),
            value: ps_apply,
            unit: "us",
        },
        Row {
            label: "python Pool.apply round trip".into(),
            value: py_apply,
            unit: "us",
        },
    ];
    eprintln!(
        "\n=== multiproc::pool::Pool vs rayon, procspawn{}: {WORKERS} workers; median time per iteration over criterion's samples ===",
        py_version.as_deref().map_or(String::new(), |v| format!(", Python {v} multiprocessing.Pool"))
    );
    for r in &rows {
        eprintln!("  {:<44} {:>18}", r.label, fmt_value(r.value, r.unit));
    }
    for &(n, mp, ry, ps) in &primes {
        eprintln!(
            "  {:<44} {:>18}",
            format!("multiproc map primes x{n}"),
            fmt_value(mp, "ms")
        );
        eprintln!(
            "  {:<44} {:>18}",
            format!("rayon map primes x{n}"),
            fmt_value(ry, "ms")
        );
        eprintln!(
            "  {:<44} {:>18}",
            format!("procspawn map primes x{n}"),
            fmt_value(ps, "ms")
        );
    }
    if let Some(n) = py_primes_items {
        eprintln!(
            "  {:<44} {:>18}",
            format!("python Pool.map primes x{n}"),
            fmt_value(py_primes, "ms")
        );
    }

    eprintln!("\nratios (how many times better multiproc is; targets from issue 14):");
    let lines = [
        ratio(
            "map cs1 vs python",
            div(mp_cs1, py_cs1),
            Some((25.0, ">= 25x")),
        ),
        ratio(
            "map cs1 vs 1.5M tasks/s",
            div(mp_cs1, Some(1.5e6)),
            Some((1.0, ">= 1.5M tasks/s")),
        ),
        ratio(
            "map default vs python",
            div(mp_def, py_def),
            Some((2.0, ">= 2x")),
        ),
        ratio(
            "map cs1 vs procspawn",
            div(mp_cs1, ps_map),
            Some((50.0, ">= 50x")),
        ),
        ratio("map default vs procspawn", div(mp_def, ps_map), None),
        ratio("map cs1 vs rayon max_len 1", div(mp_cs1, rayon_len1), None),
        ratio("map default vs rayon", div(mp_def, rayon_map), None),
        ratio("imap_unordered cs64 vs python", div(mp_imap, py_imap), None),
        ratio(
            "apply vs python (python / multiproc)",
            div(py_apply, mp_apply),
            Some((20.0, "<= 1/20 of python")),
        ),
        ratio(
            "apply vs procspawn (procspawn / multiproc)",
            div(ps_apply, mp_apply),
            None,
        ),
    ];
    for l in lines {
        eprintln!("{l}");
    }
    for &(n, mp, ry, ps) in &primes {
        // Within 10% of rayon: rayon / multiproc >= 1 / 1.1.
        eprintln!(
            "{}",
            ratio(
                &format!("primes x{n} vs rayon (rayon / multiproc)"),
                div(ry, mp),
                Some((1.0 / 1.1, "within 10%"))
            )
        );
        eprintln!(
            "{}",
            ratio(
                &format!("primes x{n} vs procspawn (procspawn / multiproc)"),
                div(ps, mp),
                None
            )
        );
        if py_primes_items == Some(n) {
            eprintln!(
                "{}",
                ratio(
                    &format!("primes x{n} vs python (python / multiproc)"),
                    div(py_primes, mp),
                    None
                )
            );
        }
    }
    if !paired.is_empty() {
        eprintln!(
            "\nprimes map, multiproc and rayon in alternation (best / median of the rounds, ms):"
        );
    }
    for pr in paired {
        let (mb, mm) = Paired::best_median(&pr.multiproc);
        let (rb, rm) = Paired::best_median(&pr.rayon);
        eprintln!(
            "  x{:<4} multiproc {mb:>8.1} / {mm:>8.1}   rayon {rb:>8.1} / {rm:>8.1}   ({} rounds)",
            pr.items,
            pr.multiproc.len()
        );
        eprintln!(
            "{}",
            ratio(
                &format!("primes x{} vs rayon, best of rounds", pr.items),
                Some(rb / mb),
                Some((1.0 / 1.1, "within 10%"))
            )
        );
        eprintln!(
            "{}",
            ratio(
                &format!("primes x{} vs rayon, median of rounds", pr.items),
                Some(rm / mm),
                Some((1.0 / 1.1, "within 10%"))
            )
        );
    }
    eprintln!(
        "\nload average before criterion: {load_before}; now: {}",
        loadavg()
    );
}

fn main() {
    // Both before anything else: multiproc's spawned children and
    // procspawn's pool workers re-run this binary and stop here.
    multiproc::init();
    procspawn::init();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    // Only a real run gets the summary (`cargo bench` passes `--bench`;
    // `cargo test --benches` runs each bench once, `--list` runs none).
    let real_run = std::env::args().any(|a| a == "--bench");
    let load_before = loadavg();
    let pools = Pools::new();
    map_trivial(&mut c, &pools);
    imap_unordered(&mut c, &pools);
    apply(&mut c, &pools);
    map_primes(&mut c, &pools);
    let ran_primes = SAMPLES.lock().unwrap().contains_key("mp_primes_32");
    let paired = if real_run && ran_primes {
        eprintln!("primes map: multiproc and rayon in alternation (about 6 s)");
        paired_primes(&pools)
    } else {
        Vec::new()
    };
    // Gone before Python runs: their idle workers and threads must not
    // share the cores with it.
    drop(pools);
    c.final_summary();
    if real_run {
        summary(&paired, &load_before);
    }
}
