//! Smoke test of the main job: `pep371 --quick --json` runs, its JSON
//! parses, and it holds every table cell, every IPC figure and every Pool
//! figure as a positive number (no time is asserted). When python3 ran, its figures must be there
//! too; a machine without python3 is reported as `missing`, which passes.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const WORKLOADS: [&str; 5] = [
    "empty_func",
    "fibonacci",
    "crunch_primes",
    "file_io",
    "url_get",
];
const MODES: [&str; 3] = ["serial", "threads", "processes"];
const FIGURES: [&str; 14] = [
    "queue_8B_msgs_per_s",
    "queue_64B_msgs_per_s",
    "queue_4KiB_msgs_per_s",
    "queue_1MiB_msgs_per_s",
    "queue_1MiB_zero_copy_msgs_per_s",
    "pipe_8B_msgs_per_s",
    "pipe_4KiB_msgs_per_s",
    "round_trip_p50_us",
    "round_trip_p99_us",
    "start_join_fork_us",
    "start_join_bare_fork_us",
    "start_join_forkserver_us",
    "start_join_spawn_us",
    "locked_counter_incr_per_s",
];

const POOL_FIGURES: [&str; 5] = [
    "pool_map_cs1_tasks_per_s",
    "pool_map_default_tasks_per_s",
    "pool_imap_unordered_cs64_tasks_per_s",
    "pool_apply_round_trip_us",
    "pool_map_primes_us",
];

/// Runs the binary with `args`; kills it and fails after `limit` (a
/// watchdog, not a timing assertion). Returns (exit code, stdout, stderr).
fn run(args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pep371"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pep371");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "pep371 {args:?} still running after {limit:?}; stderr:\n{}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), out.join().unwrap(), err.join().unwrap())
}

fn positive(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| x.is_finite() && x > 0.0)
}

#[test]
fn quick_json_has_every_figure() {
    let svg = std::env::temp_dir().join(format!("pep371-test-{}.svg", std::process::id()));
    let svg_arg = svg.to_str().unwrap();
    let (code, stdout, stderr) = run(
        &["--quick", "--json", "--svg", svg_arg],
        Duration::from_secs(240),
    );
    assert_eq!(
        code,
        Some(0),
        "pep371 failed; stderr:\n{stderr}\nstdout:\n{stdout}"
    );
    let j: Value = serde_json::from_str(&stdout).expect("stdout is one JSON object");

    assert_eq!(j["quick"], Value::Bool(true));
    assert_eq!(j["best_of"], 1);
    let workers: Vec<u64> = j["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_u64().unwrap())
        .collect();
    assert_eq!(workers, [1, 2]);

    let python = j["python"]["status"].as_str().unwrap();
    assert!(
        python == "ok" || python == "missing",
        "the Python side failed: {}",
        j["python"]["error"]
    );
    let with_python = python == "ok";

    let table = j["table"].as_array().unwrap();
    assert_eq!(table.len(), WORKLOADS.len() * MODES.len() * workers.len());
    for w in WORKLOADS {
        for m in MODES {
            for &n in &workers {
                let cell = table
                    .iter()
                    .find(|c| c["workload"] == w && c["mode"] == m && c["workers"] == n)
                    .unwrap_or_else(|| panic!("no cell {w} {m} x{n}"));
                assert!(positive(&cell["multiproc_s"]), "{cell}");
                if with_python {
                    assert!(positive(&cell["python_s"]), "{cell}");
                    assert!(positive(&cell["speedup"]), "{cell}");
                }
            }
        }
    }

    for (section, keys) in [("ipc", &FIGURES[..]), ("pool", &POOL_FIGURES[..])] {
        let figs = j[section].as_array().unwrap();
        assert_eq!(figs.len(), keys.len(), "{section}");
        for key in keys {
            let f = figs
                .iter()
                .find(|f| f["key"] == *key)
                .unwrap_or_else(|| panic!("no figure {key} in {section}"));
            assert!(positive(&f["multiproc"]), "{f}");
            if with_python {
                assert!(positive(&f["python"]), "{f}");
                assert!(positive(&f["speedup"]), "{f}");
            }
        }
    }

    assert_eq!(j["svg"].as_str(), Some(svg_arg));
    let chart = std::fs::read_to_string(&svg).expect("the chart was written");
    let _ = std::fs::remove_file(&svg);
    assert!(chart.starts_with("<svg"), "{:.100}", chart);
    for w in WORKLOADS {
        assert!(chart.contains(w), "the chart has no panel for {w}");
    }
    assert!(
        chart.contains("Pool, 2 workers"),
        "the chart has no Pool panel"
    );
}

#[test]
fn bad_arguments_are_refused() {
    let (code, _, stderr) = run(&["--workers", "0"], Duration::from_secs(60));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--workers"), "{stderr}");
    let (code, _, stderr) = run(&["--frobnicate"], Duration::from_secs(60));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("usage"), "{stderr}");
    let (code, stdout, _) = run(&["--help"], Duration::from_secs(60));
    assert_eq!(code, Some(0));
    assert!(stdout.contains("--quick"), "{stdout}");
}
