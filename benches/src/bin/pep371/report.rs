//! The results of a run, paired with Python's, as text and as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::ipc::{Measured, Unit};
use crate::python::{Outcome, PyResults};

/// Everything one run measured: the `--json` object.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) machine: Machine,
    pub(crate) quick: bool,
    /// Each table cell is the best of this many runs.
    pub(crate) best_of: usize,
    pub(crate) workers: Vec<usize>,
    pub(crate) python: PythonInfo,
    pub(crate) table: Vec<Cell>,
    pub(crate) ipc: Vec<Figure>,
    /// The Pool figures (`multiproc::pool::Pool` against
    /// `multiprocessing.Pool`, 2 workers each).
    pub(crate) pool: Vec<Figure>,
    /// Where the chart was written (`None`: it could not be).
    pub(crate) svg: Option<String>,
    /// Why the chart could not be written.
    pub(crate) svg_error: Option<String>,
    /// Wall time of the whole run, Python included.
    pub(crate) run_seconds: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Machine {
    pub(crate) cpus: usize,
    pub(crate) os: &'static str,
    pub(crate) arch: &'static str,
}

impl Machine {
    pub(crate) fn this() -> Machine {
        Machine {
            cpus: multiproc::cpu_count(),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct PythonInfo {
    /// `ok`, `missing` or `failed`.
    pub(crate) status: &'static str,
    pub(crate) version: Option<String>,
    pub(crate) error: Option<String>,
}

/// One cell of the PEP 371 table.
#[derive(Debug, Serialize)]
pub(crate) struct Cell {
    pub(crate) workload: &'static str,
    pub(crate) mode: &'static str,
    pub(crate) workers: usize,
    /// multiproc's best time in seconds (`None`: it failed, see `error`).
    pub(crate) multiproc_s: Option<f64>,
    pub(crate) error: Option<String>,
    pub(crate) python_s: Option<f64>,
    /// `python_s / multiproc_s`: how many times faster multiproc is.
    pub(crate) speedup: Option<f64>,
}

/// One IPC figure.
#[derive(Debug, Serialize)]
pub(crate) struct Figure {
    pub(crate) key: &'static str,
    pub(crate) label: &'static str,
    /// The multiproc structure measured.
    pub(crate) what: &'static str,
    pub(crate) unit: Unit,
    pub(crate) multiproc: Option<f64>,
    pub(crate) error: Option<String>,
    /// Python's figure it is compared with.
    pub(crate) python_key: &'static str,
    pub(crate) python: Option<f64>,
    /// How many times faster multiproc is (rates: ours / theirs; times:
    /// theirs / ours).
    pub(crate) speedup: Option<f64>,
}

impl PythonInfo {
    pub(crate) fn of(outcome: &Outcome) -> PythonInfo {
        match outcome {
            Outcome::Ok(r) => PythonInfo {
                status: "ok",
                version: Some(r.python.clone()),
                error: None,
            },
            Outcome::Missing(why) => PythonInfo {
                status: "missing",
                version: None,
                error: Some(why.clone()),
            },
            Outcome::Failed(why) => PythonInfo {
                status: "failed",
                version: None,
                error: Some(why.clone()),
            },
        }
    }
}

fn positive(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && *x > 0.0)
}

/// Python's time for a cell.
pub(crate) fn python_cell(
    py: Option<&PyResults>,
    workload: &str,
    mode: &str,
    workers: usize,
) -> Option<f64> {
    let row = py?
        .table
        .iter()
        .find(|r| r.workload == workload && r.mode == mode && r.workers == workers)?;
    positive(Some(row.seconds))
}

impl Cell {
    pub(crate) fn new(
        workload: &'static str,
        mode: &'static str,
        workers: usize,
        ours: Result<f64, String>,
        python_s: Option<f64>,
    ) -> Cell {
        let (multiproc_s, error) = match ours {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        let speedup = match (positive(multiproc_s), python_s) {
            (Some(m), Some(p)) => Some(p / m),
            _ => None,
        };
        Cell {
            workload,
            mode,
            workers,
            multiproc_s,
            error,
            python_s,
            speedup,
        }
    }
}

impl Figure {
    /// Our figure `m` paired with Python's value for it (in the same unit).
    pub(crate) fn new(m: Measured, python: Option<f64>) -> Figure {
        let python = positive(python);
        let (multiproc, error) = match m.value {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        let speedup = match (positive(multiproc), python) {
            (Some(ours), Some(theirs)) if m.spec.unit.higher_is_better() => Some(ours / theirs),
            (Some(ours), Some(theirs)) => Some(theirs / ours),
            _ => None,
        };
        Figure {
            key: m.spec.key,
            label: m.spec.label,
            what: m.spec.what,
            unit: m.spec.unit,
            multiproc,
            error,
            python_key: m.spec.python_key,
            python,
            speedup,
        }
    }
}

/// A time in seconds with a unit that fits it.
pub(crate) fn fmt_secs(s: f64) -> String {
    if s < 1e-6 {
        format!("{:.0} ns", s * 1e9)
    } else if s < 1e-3 {
        format!("{:.1} us", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.3} s")
    }
}

fn fmt_value(v: f64, unit: Unit) -> String {
    let rate = |what: &str| {
        if v >= 1e9 {
            format!("{:.2} G {what}/s", v / 1e9)
        } else if v >= 1e6 {
            format!("{:.2} M {what}/s", v / 1e6)
        } else if v >= 1e3 {
            format!("{:.1} k {what}/s", v / 1e3)
        } else {
            format!("{v:.0} {what}/s")
        }
    };
    match unit {
        Unit::MsgsPerS => rate("msg"),
        Unit::IncrPerS => rate("incr"),
        Unit::TasksPerS => rate("task"),
        Unit::Us => fmt_secs(v / 1e6),
    }
}

fn fmt_speedup(x: Option<f64>) -> String {
    match x {
        Some(x) if x >= 10.0 => format!("{x:.0}x"),
        Some(x) => format!("{x:.1}x"),
        None => "-".into(),
    }
}

impl Report {
    /// The human-readable report.
    pub(crate) fn text(&self) -> String {
        let mut o = String::new();
        let py = match (&self.python.version, &self.python.error) {
            (Some(v), _) => format!("Python {v} multiprocessing (benches/python/pep371.py)"),
            (None, Some(e)) if self.python.status == "missing" => {
                format!("no Python figures ({e})")
            }
            (None, _) => "no Python figures (the Python side failed: see the end)".into(),
        };
        let _ = writeln!(
            o,
            "multiproc PEP 371 comparison: {} CPUs, {} {}; {}",
            self.machine.cpus, self.machine.os, self.machine.arch, py
        );
        let _ = writeln!(
            o,
            "\nPEP 371 workloads: wall time, best of {} (lower is better); speed-up = Python / multiproc",
            self.best_of
        );
        let _ = writeln!(
            o,
            "{:<14} {:<10} {:>7} {:>12} {:>12} {:>9}",
            "workload", "mode", "workers", "multiproc", "python", "speed-up"
        );
        let mut last = "";
        for c in &self.table {
            if c.workload != last && !last.is_empty() {
                o.push('\n');
            }
            last = c.workload;
            let ours = c.multiproc_s.map_or_else(|| "FAILED".to_owned(), fmt_secs);
            let theirs = c.python_s.map_or_else(|| "-".to_owned(), fmt_secs);
            let _ = writeln!(
                o,
                "{:<14} {:<10} {:>7} {:>12} {:>12} {:>9}",
                c.workload,
                c.mode,
                c.workers,
                ours,
                theirs,
                fmt_speedup(c.speedup)
            );
        }
        let _ = writeln!(
            o,
            "\nIPC between two processes (fork): multiproc's Queue, byte queue, Pipe, SPSC channel, Mutex\n\
             vs Python multiprocessing; speed-up = how many times faster multiproc is"
        );
        let _ = writeln!(
            o,
            "{:<24} {:>16} {:>16} {:>9}  multiproc side",
            "figure", "multiproc", "python", "speed-up"
        );
        for f in &self.ipc {
            let ours = f
                .multiproc
                .map_or_else(|| "FAILED".to_owned(), |v| fmt_value(v, f.unit));
            let theirs = f
                .python
                .map_or_else(|| "-".to_owned(), |v| fmt_value(v, f.unit));
            let _ = writeln!(
                o,
                "{:<24} {:>16} {:>16} {:>9}  {}",
                f.label,
                ours,
                theirs,
                fmt_speedup(f.speedup),
                f.what
            );
        }
        let _ = writeln!(
            o,
            "\nPool, {} workers: multiproc::pool::Pool (fork) vs multiprocessing.Pool; trivial task x + 1;\n\
             map primes = PEP 371's crunch_primes once per item; speed-up = how many times faster multiproc is",
            crate::pool::WORKERS
        );
        let _ = writeln!(
            o,
            "{:<24} {:>16} {:>16} {:>9}  multiproc side",
            "figure", "multiproc", "python", "speed-up"
        );
        for f in &self.pool {
            let ours = f
                .multiproc
                .map_or_else(|| "FAILED".to_owned(), |v| fmt_value(v, f.unit));
            let theirs = f
                .python
                .map_or_else(|| "-".to_owned(), |v| fmt_value(v, f.unit));
            let _ = writeln!(
                o,
                "{:<24} {:>16} {:>16} {:>9}  {}",
                f.label,
                ours,
                theirs,
                fmt_speedup(f.speedup),
                f.what
            );
        }
        let errors: Vec<String> = self
            .table
            .iter()
            .filter_map(|c| {
                c.error
                    .as_ref()
                    .map(|e| format!("{} {} x{}: {e}", c.workload, c.mode, c.workers))
            })
            .chain(
                self.ipc
                    .iter()
                    .chain(&self.pool)
                    .filter_map(|f| f.error.as_ref().map(|e| format!("{}: {e}", f.label))),
            )
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(o, "\nmultiproc failures:");
            for e in errors {
                let _ = writeln!(o, "  {e}");
            }
        }
        if let (Some(e), "failed") = (&self.python.error, self.python.status) {
            let _ = writeln!(o, "\nthe Python side failed: {e}");
        }
        o
    }

    /// Whether every multiproc figure was measured.
    pub(crate) fn complete(&self) -> bool {
        self.table.iter().all(|c| c.multiproc_s.is_some())
            && self.ipc.iter().all(|f| f.multiproc.is_some())
            && self.pool.iter().all(|f| f.multiproc.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_pick_a_readable_scale() {
        assert_eq!(fmt_secs(2.5e-8), "25 ns");
        assert_eq!(fmt_secs(1.25e-5), "12.5 us");
        assert_eq!(fmt_secs(0.0123), "12.30 ms");
        assert_eq!(fmt_secs(2.0), "2.000 s");
        assert_eq!(fmt_value(2.5e7, Unit::MsgsPerS), "25.00 M msg/s");
        assert_eq!(fmt_value(1500.0, Unit::IncrPerS), "1.5 k incr/s");
        assert_eq!(fmt_value(1.5e6, Unit::TasksPerS), "1.50 M task/s");
        assert_eq!(fmt_value(30.0, Unit::Us), "30.0 us");
    }

    #[test]
    fn speedup_direction_follows_the_unit() {
        use crate::ipc::{FigureSpec, FIGURES};
        let py: std::collections::BTreeMap<String, f64> = [
            ("queue_8B_msgs_per_s".to_owned(), 100.0),
            ("round_trip_p50_us".to_owned(), 40.0),
        ]
        .into_iter()
        .collect();
        let py = |k: &str| py.get(k).copied();
        let spec = |k: &str| -> FigureSpec { *FIGURES.iter().find(|f| f.key == k).unwrap() };
        let rate = Figure::new(
            Measured {
                spec: spec("queue_8B_msgs_per_s"),
                value: Ok(1000.0),
            },
            py("queue_8B_msgs_per_s"),
        );
        assert_eq!(rate.speedup, Some(10.0));
        let time = Figure::new(
            Measured {
                spec: spec("round_trip_p50_us"),
                value: Ok(4.0),
            },
            py("round_trip_p50_us"),
        );
        assert_eq!(time.speedup, Some(10.0));
        let missing = Figure::new(
            Measured {
                spec: spec("pipe_8B_msgs_per_s"),
                value: Ok(4.0),
            },
            py("pipe_8B_msgs_per_s"),
        );
        assert_eq!(missing.speedup, None);
    }
}
