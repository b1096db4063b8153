//! The main job: PEP 371's performance comparison and the IPC figures for
//! multiproc, side by side with Python's `multiprocessing` run in the same
//! invocation (`benches/python/pep371.py`), with the speed-up of each pair.
//!
//! ```sh
//! cargo run --release -p multiproc-benches --bin pep371 [-- --quick] [--json] [--svg PATH]
//! ```
//!
//! | module | what |
//! |---|---|
//! | [`workloads`] | the five PEP 371 workloads, the loopback HTTP server, serial / threads / processes runners |
//! | [`ipc`] | queue, pipe, round-trip, start+join and locked-counter figures over `multiproc-core` structures in shared memory |
//! | [`pool`] | `multiproc::pool::Pool` figures: map (chunksize 1, default), imap_unordered, apply round trip, map of primes |
//! | [`python`] | runs the Python script and reads its JSON |
//! | [`report`] | pairs the figures, prints the text report and the JSON object |
//! | [`chart`] | the SVG chart of the table |
//! | [`progress`] | the progress line on stderr |

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod chart;
mod ipc;
mod pool;
mod progress;
mod python;
mod report;
mod workloads;

use progress::Progress;
use python::Outcome;
use report::{Cell, Figure, Machine, PythonInfo, Report};
use workloads::{Fixture, MODES, WORKLOADS};

const USAGE: &str = "\
usage: pep371 [--quick] [--json] [--svg PATH] [--workers 1,2,4,8] [--no-python] [--python PYTHON]

  --quick          best of 1, workers 1 and 2, short IPC runs (well under a minute)
  --json           print one JSON object with every figure on stdout instead of the tables
  --svg PATH       where to write the chart (default target/pep371.svg)
  --workers LIST   worker counts of the table (default 1,2,4,8; --quick: 1,2)
  --no-python      do not run the Python side
  --python PYTHON  the interpreter to run benches/python/pep371.py with (default python3)";

/// The command line.
#[derive(Debug)]
struct Args {
    quick: bool,
    json: bool,
    svg: PathBuf,
    workers: Vec<usize>,
    python: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut quick = false;
    let mut json = false;
    let mut svg = PathBuf::from("target/pep371.svg");
    let mut workers = None;
    let mut python = Some("python3".to_owned());
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => quick = true,
            "--json" => json = true,
            "--svg" => svg = value("--svg")?.into(),
            "--workers" => {
                let list = value("--workers")?;
                let ws = list
                    .split(',')
                    .map(|w| {
                        w.trim()
                            .parse::<usize>()
                            .ok()
                            .filter(|&w| (1..=64).contains(&w))
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or(format!(
                        "--workers: {list:?} is not a list of counts from 1 to 64"
                    ))?;
                workers = Some(ws);
            }
            "--no-python" => python = None,
            "--python" => python = Some(value("--python")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let workers = workers.unwrap_or_else(|| if quick { vec![1, 2] } else { vec![1, 2, 4, 8] });
    Ok(Args {
        quick,
        json,
        svg,
        workers,
        python,
    })
}

fn main() -> ExitCode {
    // Spawn and forkserver children re-run this binary: they stop in
    // `init` and run the entry point, before anything else happens.
    multiproc::register_entry(ipc::NOOP_ENTRY, ipc::noop_entry).expect("a valid entry name");
    multiproc::init();

    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("pep371: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let run_start = Instant::now();
    let best_of = if args.quick { 1 } else { 3 };
    let cells = WORKLOADS.len() * MODES.len() * args.workers.len();
    let python_steps = if args.python.is_some() {
        cells + python::IPC_STEPS
    } else {
        0
    };
    let mut progress = Progress::new(cells + ipc::STEPS + pool::STEPS + python_steps);

    // 1. The PEP 371 table, multiproc side.
    let fixture = match Fixture::new() {
        Ok(f) => f,
        Err(e) => {
            progress.clear();
            eprintln!("pep371: cannot set up the workloads (data file, loopback server): {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ours = Vec::with_capacity(cells);
    for workload in WORKLOADS {
        let job = fixture.job(workload);
        for &workers in &args.workers {
            for mode in MODES {
                progress.step(&format!("multiproc: {workload} {mode} x{workers}"));
                let r = workloads::best_of(best_of, &job, mode, workers);
                ours.push((workload, mode, workers, r));
            }
        }
    }
    drop(fixture);

    // 2. The IPC figures.
    let measured = ipc::run_all(&ipc::Budget::new(args.quick), &mut progress);

    // 3. The Pool figures (its `fork` start method wants no other thread:
    // the loopback server's are gone with the fixture).
    let pool_budget = pool::Budget::new(args.quick);
    let pooled = pool::run_all(&pool_budget, &mut progress);

    // 4. Python, after multiproc is done (the machine is not shared).
    let outcome = match &args.python {
        Some(interpreter) => python::run(
            &python::Request {
                interpreter,
                script: python::find_script(),
                quick: args.quick,
                workers: &args.workers,
                time_limit: Duration::from_secs(if args.quick { 120 } else { 1200 }),
            },
            &mut progress,
        ),
        None => Outcome::Missing("not run (--no-python)".into()),
    };
    progress.clear();
    let py = match &outcome {
        Outcome::Ok(r) => Some(r),
        _ => None,
    };

    let table = ours
        .into_iter()
        .map(|(workload, mode, workers, r)| {
            let theirs = report::python_cell(py, workload, mode, workers);
            Cell::new(workload, mode, workers, r, theirs)
        })
        .collect();
    let ipc = measured
        .into_iter()
        .map(|m| {
            let theirs = py.and_then(|p| p.ipc.get(m.spec.python_key).copied());
            Figure::new(m, theirs)
        })
        .collect();
    let pool = pooled
        .into_iter()
        .map(|m| {
            let theirs = py.and_then(|p| pool::python_value(&m.spec, &p.pool, &pool_budget));
            Figure::new(m, theirs)
        })
        .collect();
    let mut report = Report {
        machine: Machine::this(),
        quick: args.quick,
        best_of,
        workers: args.workers.clone(),
        python: PythonInfo::of(&outcome),
        table,
        ipc,
        pool,
        svg: None,
        svg_error: None,
        run_seconds: 0.0,
    };
    let svg = std::path::absolute(&args.svg).unwrap_or_else(|_| args.svg.clone());
    match chart::write_svg(&svg, &report) {
        Ok(()) => report.svg = Some(svg.display().to_string()),
        Err(e) => report.svg_error = Some(format!("{}: {e}", svg.display())),
    }
    report.run_seconds = run_start.elapsed().as_secs_f64();

    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => {
                println!("{s}");
                if let Some(p) = &report.svg {
                    eprintln!("chart: {p}");
                }
            }
            Err(e) => {
                eprintln!("pep371: cannot write JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report.text());
        match (&report.svg, &report.svg_error) {
            (Some(p), _) => println!("\nchart: {p}"),
            (None, Some(e)) => println!("\nchart not written: {e}"),
            (None, None) => {}
        }
        println!("run time: {:.1} s", report.run_seconds);
    }
    if report.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
