//! Runs the Python side (`benches/python/pep371.py`) and reads its JSON.
//!
//! Nothing here may end the run: a missing interpreter, a missing script,
//! a crash, a hang (killed after a time limit) or unreadable output all
//! become an [`Outcome`] that the report prints.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::progress::Progress;

/// Progress lines the script prints for its IPC and Pool figures (one
/// more per table cell).
pub(crate) const IPC_STEPS: usize = 12 + 5;

/// The script's output.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PyResults {
    /// `sys.version`, first word.
    pub(crate) python: String,
    pub(crate) table: Vec<PyRow>,
    pub(crate) ipc: BTreeMap<String, f64>,
    /// The Pool figures (`pool_bench.measure`), with the item counts they
    /// were measured over (`trivial_items`, `primes_items`).
    #[serde(default)]
    pub(crate) pool: BTreeMap<String, f64>,
}

/// One cell of Python's table.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PyRow {
    pub(crate) workload: String,
    pub(crate) mode: String,
    pub(crate) workers: usize,
    pub(crate) seconds: f64,
}

/// How the Python side went.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Ok(PyResults),
    /// Not run: no interpreter, or `--no-python`.
    Missing(String),
    /// It ran and failed.
    Failed(String),
}

/// Finds the script: in the source tree this binary was built from, else
/// next to the binary.
pub(crate) fn find_script() -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/pep371.py");
    if src.is_file() {
        return Some(src);
    }
    let exe = std::env::current_exe().ok()?;
    let near = exe.parent()?.join("pep371.py");
    near.is_file().then_some(near)
}

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Request<'a> {
    pub(crate) interpreter: &'a str,
    pub(crate) script: Option<PathBuf>,
    pub(crate) quick: bool,
    pub(crate) workers: &'a [usize],
    pub(crate) time_limit: Duration,
}

/// Runs the script, relaying its progress lines (`python: ...` on stderr)
/// to `progress`.
pub(crate) fn run(req: &Request<'_>, progress: &mut Progress) -> Outcome {
    let Some(script) = req.script.clone() else {
        return Outcome::Failed(format!(
            "benches/python/pep371.py not found (looked in {} and next to the binary)",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("python")
                .display()
        ));
    };
    let workers = req
        .workers
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new(req.interpreter);
    cmd.arg(&script).arg("--workers").arg(workers);
    if req.quick {
        cmd.arg("--quick");
    }
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::Missing(format!("{} not found", req.interpreter));
        }
        Err(e) => return Outcome::Failed(format!("running {}: {e}", req.interpreter)),
    };
    let mut stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel::<String>();
    let err_reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let start = Instant::now();
    let mut other_lines: Vec<String> = Vec::new();
    let mut timed_out = false;
    let status = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                if line.starts_with("python: ") {
                    progress.step(&line);
                } else {
                    other_lines.push(line);
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {}
        }
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        if start.elapsed() > req.time_limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().ok();
        }
    };
    let _ = err_reader.join();
    other_lines.extend(rx.try_iter().filter(|l| !l.starts_with("python: ")));
    let stdout = out_reader.join().unwrap_or_default();
    let tail = || {
        let n = other_lines.len();
        other_lines[n.saturating_sub(15)..].join("\n")
    };
    if timed_out {
        return Outcome::Failed(format!(
            "killed after {:.0} s (time limit)",
            req.time_limit.as_secs_f64()
        ));
    }
    match status {
        Some(s) if s.success() => match serde_json::from_str::<PyResults>(stdout.trim()) {
            Ok(r) => Outcome::Ok(r),
            Err(e) => Outcome::Failed(format!("unreadable output ({e}): {:.200}", stdout.trim())),
        },
        Some(s) => {
            let mut msg = format!("{} {} ended with {s}", req.interpreter, script.display());
            let tail = tail();
            if !tail.is_empty() {
                msg.push_str(":\n");
                msg.push_str(&tail);
            }
            Outcome::Failed(msg)
        }
        None => Outcome::Failed("could not wait for the interpreter".into()),
    }
}
