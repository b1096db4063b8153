//! The progress line on stderr: rewritten in place on a terminal, one line
//! per step otherwise (so logs stay readable).

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Counts steps of a run and shows the current one.
#[derive(Debug)]
pub(crate) struct Progress {
    total: usize,
    done: usize,
    tty: bool,
    start: Instant,
    dirty: bool,
}

impl Progress {
    pub(crate) fn new(total: usize) -> Progress {
        Progress {
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            dirty: false,
        }
    }

    /// Starts step `label`.
    pub(crate) fn step(&mut self, label: &str) {
        self.done += 1;
        let line = format!(
            "[{:>3}/{} {:>5.1}s] {label}",
            self.done.min(self.total),
            self.total,
            self.start.elapsed().as_secs_f64()
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            self.dirty = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Erases the progress line (before the results are printed).
    pub(crate) fn clear(&mut self) {
        if self.dirty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.dirty = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}
