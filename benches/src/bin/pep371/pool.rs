//! The Pool figures, multiproc side: [`multiproc::pool::Pool`] with 2
//! workers (fork start method), measured as `benches/python/pool_bench.py`
//! measures Python's `multiprocessing.Pool` (the main job runs that script's
//! `measure` through `pep371.py`).
//!
//! | key | what |
//! |---|---|
//! | `pool_map_cs1_tasks_per_s` | `pool.chunksize(1).map(x + 1)` over 100k items (10k with `--quick`) |
//! | `pool_map_default_tasks_per_s` | `pool.map(x + 1)`, default chunking (Python's rule) |
//! | `pool_imap_unordered_cs64_tasks_per_s` | `pool.chunksize(64).imap_unordered(x + 1)`, collected |
//! | `pool_apply_round_trip_us` | `pool.apply(x + 1)`: one task and its result |
//! | `pool_map_primes_us` | `pool.map(crunch_primes)` over 32 items (4 with `--quick`): wall time |
//!
//! Each figure is the median of 5 runs (3 for the two slow ones; 1 with
//! `--quick`), after one warm-up map, as in the Python script. Every
//! result is checked, outside the clock.

use std::hint::black_box;
use std::time::Instant;

use multiproc::pool::Pool;
use multiproc_benches::{crunch_primes, PRIME_LIMIT, PRIME_SUM};

use crate::ipc::{FigureSpec, Measured, Unit};
use crate::progress::Progress;

/// Workers of the pool (and of Python's).
pub(crate) const WORKERS: usize = 2;

/// How much work each figure does (the Python script's sizes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Items of the trivial maps.
    pub(crate) trivial: u64,
    /// Items of the primes map.
    pub(crate) primes: u64,
    /// `apply` calls per run.
    pub(crate) applies: u64,
    /// Runs of the fast figures (the median is kept).
    pub(crate) many: usize,
    /// Runs of the slow ones (chunksize 1, primes).
    pub(crate) few: usize,
}

impl Budget {
    pub(crate) fn new(quick: bool) -> Budget {
        if quick {
            Budget {
                trivial: 10_000,
                primes: 4,
                applies: 200,
                many: 1,
                few: 1,
            }
        } else {
            Budget {
                trivial: 100_000,
                primes: 32,
                applies: 2000,
                many: 5,
                few: 3,
            }
        }
    }
}

/// Every Pool figure, in the order they are measured and printed. The
/// Python key is in the script's `pool` object.
#[rustfmt::skip]
pub(crate) const FIGURES: [FigureSpec; 5] = [
    spec("pool_map_cs1_tasks_per_s", "map_cs1_tasks_per_s", "map, chunksize 1", "pool.chunksize(1).map(x + 1)", Unit::TasksPerS),
    spec("pool_map_default_tasks_per_s", "map_default_tasks_per_s", "map, default chunks", "pool.map(x + 1)", Unit::TasksPerS),
    spec("pool_imap_unordered_cs64_tasks_per_s", "imap_unordered_cs64_tasks_per_s", "imap_unordered, cs 64", "pool.chunksize(64).imap_unordered(x + 1)", Unit::TasksPerS),
    spec("pool_apply_round_trip_us", "apply_round_trip_us", "apply round trip", "pool.apply(x + 1)", Unit::Us),
    spec("pool_map_primes_us", "map_primes_s", "map primes", "pool.map(crunch_primes), 32 items (4 with --quick): wall time", Unit::Us),
];

const fn spec(
    key: &'static str,
    python_key: &'static str,
    label: &'static str,
    what: &'static str,
    unit: Unit,
) -> FigureSpec {
    FigureSpec {
        key,
        python_key,
        label,
        what,
        unit,
    }
}

/// Steps [`run_all`] reports to the progress line.
pub(crate) const STEPS: usize = 5;

/// The trivial task.
fn inc(x: u64) -> u64 {
    x + 1
}

/// The CPU-heavy task: PEP 371's `crunch_primes`, whatever the item.
fn prime_sum(_item: u64) -> u64 {
    crunch_primes(black_box(PRIME_LIMIT))
}

/// Median wall time in seconds of `runs` calls of `f`; `check` looks at
/// each result after the clock stopped.
fn median_of<R>(
    runs: usize,
    mut f: impl FnMut() -> Result<R, String>,
    check: impl Fn(&R) -> Result<(), String>,
) -> Result<f64, String> {
    let mut v = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let r = f()?;
        v.push(t.elapsed().as_secs_f64());
        check(&r)?;
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

fn trivial_check(n: u64) -> impl Fn(&Vec<u64>) -> Result<(), String> {
    move |r| {
        let sum: u64 = r.iter().sum();
        let want = n * (n - 1) / 2 + n;
        if r.len() as u64 == n && sum == want {
            Ok(())
        } else {
            Err(format!(
                "{} results summing to {sum}, not {n} summing to {want}",
                r.len()
            ))
        }
    }
}

/// Measures every figure with a fresh pool, reporting each step to
/// `progress`. A pool that cannot start fails every figure with its error.
pub(crate) fn run_all(b: &Budget, progress: &mut Progress) -> Vec<Measured> {
    let mut out = Vec::with_capacity(FIGURES.len());
    let pool = Pool::new(WORKERS)
        .map_err(|e| format!("Pool::new({WORKERS}): {e}"))
        .and_then(|p| {
            // The workers are up and their rings warm.
            p.map(inc, 0..1000)
                .map_err(|e| format!("warm-up map: {e}"))?;
            Ok(p)
        });
    let pool = match pool {
        Ok(p) => p,
        Err(e) => {
            return FIGURES
                .iter()
                .map(|&spec| Measured {
                    spec,
                    value: Err(e.clone()),
                })
                .collect();
        }
    };
    let err = |e: multiproc::pool::PoolError| e.to_string();
    let n = b.trivial;
    let rate = |t: Result<f64, String>| t.map(|s| n as f64 / s);
    let mut step = |label: &str| progress.step(&format!("multiproc pool: {label}"));

    step("map chunksize 1");
    let cs1 = median_of(
        b.few,
        || pool.chunksize(1).map(inc, 0..n).map_err(err),
        trivial_check(n),
    );
    step("map default chunking");
    let default = median_of(
        b.many,
        || pool.map(inc, 0..n).map_err(err),
        trivial_check(n),
    );
    step("imap_unordered chunksize 64");
    let imap = median_of(
        b.many,
        || {
            pool.chunksize(64)
                .imap_unordered(inc, 0..n)
                .map_err(err)?
                .map(|r| r.map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()
        },
        trivial_check(n),
    );
    step("apply round trip");
    let apply = (|| {
        for i in 0..50 {
            pool.apply(inc, i).map_err(err)?;
        }
        let t = median_of(
            b.many,
            || {
                (0..b.applies)
                    .map(|i| pool.apply(inc, i).map_err(err))
                    .collect::<Result<Vec<_>, _>>()
            },
            trivial_check(b.applies),
        )?;
        Ok(t / b.applies as f64 * 1e6)
    })();
    step("map primes");
    let primes = median_of(
        b.few,
        || pool.map(prime_sum, 0..b.primes).map_err(err),
        |r| {
            if r.len() as u64 == b.primes && r.iter().all(|&s| s == PRIME_SUM) {
                Ok(())
            } else {
                Err(format!("wrong prime sums: {r:?}"))
            }
        },
    )
    .map(|s| s * 1e6);
    drop(pool);

    let values = [rate(cs1), rate(default), rate(imap), apply, primes];
    for (spec, value) in FIGURES.iter().zip(values) {
        out.push(Measured { spec: *spec, value });
    }
    out
}

/// Python's value for `spec` from the script's `pool` object, in the unit
/// of ours; `None` when it is missing or was measured over a different
/// number of items than `budget`'s.
pub(crate) fn python_value(
    spec: &FigureSpec,
    py: &std::collections::BTreeMap<String, f64>,
    budget: &Budget,
) -> Option<f64> {
    let v = *py.get(spec.python_key)?;
    match spec.python_key {
        // Seconds there, microseconds here; only over the same items.
        "map_primes_s" => {
            (py.get("primes_items") == Some(&(budget.primes as f64))).then_some(v * 1e6)
        }
        _ => Some(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_keys_are_unique_and_apart_from_ipc() {
        let mut keys: Vec<_> = FIGURES
            .iter()
            .chain(crate::ipc::FIGURES.iter())
            .map(|f| f.key)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), FIGURES.len() + crate::ipc::FIGURES.len());
    }

    #[test]
    fn python_primes_only_over_the_same_items() {
        let b = Budget::new(true);
        let primes = FIGURES
            .iter()
            .find(|f| f.key == "pool_map_primes_us")
            .unwrap();
        let mut py: std::collections::BTreeMap<String, f64> = [
            ("map_primes_s".to_owned(), 0.5),
            ("primes_items".to_owned(), 4.0),
        ]
        .into_iter()
        .collect();
        assert_eq!(python_value(primes, &py, &b), Some(0.5e6));
        py.insert("primes_items".into(), 32.0);
        assert_eq!(python_value(primes, &py, &b), None);
    }
}
