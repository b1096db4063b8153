//! PEP 371's workloads, the same algorithms and sizes as
//! `benches/python/pep371.py`, and the three ways of running them.
//!
//! | workload | one call does |
//! |---|---|
//! | `empty_func` | nothing |
//! | `fibonacci` | 50 000 steps of `a, b = b, a + b` modulo 2^64 |
//! | `crunch_primes` | the sum of the primes below 100 000, by trial division |
//! | `file_io` | 1 000 random seeks in a 10 000-line file; each reads the rest of a line, then the next line, written to `/dev/null` |
//! | `url_get` | 100 HTTP GETs of a 1 088-byte page from a loopback server |
//!
//! With `n` workers, `serial` calls the workload `n` times in a row,
//! `threads` once in each of `n` `std::thread`s, `processes` once in each
//! of `n` [`multiproc::Process`]es (fork start method); the time is the
//! wall-clock time until all are done (threads and processes are started
//! and joined inside it, as in PEP 371).

use std::fs::File;
use std::hint::black_box;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc::{Process, StartMethod};
pub(crate) use multiproc_benches::{crunch_primes, PRIME_LIMIT, PRIME_SUM};

/// Workload names, in the order of the table.
pub(crate) const WORKLOADS: [&str; 5] = [
    "empty_func",
    "fibonacci",
    "crunch_primes",
    "file_io",
    "url_get",
];

/// How the workers run, in the order of the table.
pub(crate) const MODES: [&str; 3] = ["serial", "threads", "processes"];

const FIB_STEPS: u64 = 50_000;
const FILE_LINES: usize = 10_000;
const FILE_SEEKS: usize = 1_000;
const URL_FETCHES: usize = 100;
/// The page the loopback server serves: the Python script's body.
const PAGE_LINE: &[u8] = b"multiproc pep371\n";
const PAGE_REPEAT: usize = 64;

pub(crate) fn empty_func() {}

/// `a, b = b, (a + b) % 2**64`, `steps` times; returns `a`.
pub(crate) fn fibonacci(steps: u64) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..steps {
        (a, b) = (b, a.wrapping_add(b));
    }
    a
}

/// Writes the data file: `FILE_LINES` lines of `line %08d` and 60 `x`.
pub(crate) fn make_file(path: &Path) -> std::io::Result<()> {
    let mut f = BufWriter::new(File::create(path)?);
    let xs = "x".repeat(60);
    for i in 0..FILE_LINES {
        writeln!(f, "line {i:08} {xs}")?;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// SplitMix64: a small, good-enough generator for seek positions.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `FILE_SEEKS` times: seek to a random byte, read the rest of that line,
/// read the next line and write it to `/dev/null` (buffered on both
/// sides, as Python's `open` is). Returns the bytes written.
pub(crate) fn file_io(path: &Path) -> std::io::Result<u64> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut rng = SplitMix(u64::from(std::process::id()) ^ nanos_now());
    let mut input = BufReader::new(file);
    let mut out = BufWriter::new(File::options().write(true).open("/dev/null")?);
    let mut line = Vec::with_capacity(128);
    let mut written = 0;
    for _ in 0..FILE_SEEKS {
        input.seek(SeekFrom::Start(rng.next() % size))?;
        line.clear();
        input.read_until(b'\n', &mut line)?;
        line.clear();
        input.read_until(b'\n', &mut line)?;
        out.write_all(&line)?;
        written += line.len() as u64;
    }
    out.flush()?;
    Ok(written)
}

fn nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into())
}

/// `URL_FETCHES` HTTP/1.0 GETs of `addr`'s page; returns the body bytes.
pub(crate) fn url_get(addr: SocketAddr) -> std::io::Result<u64> {
    let mut total = 0;
    let mut resp = Vec::with_capacity(2048);
    for _ in 0..URL_FETCHES {
        let mut s = TcpStream::connect(addr)?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        resp.clear();
        s.read_to_end(&mut resp)?;
        let body = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| &resp[i + 4..])
            .filter(|_| resp.starts_with(b"HTTP/1.0 200"))
            .ok_or_else(|| std::io::Error::other("bad HTTP response"))?;
        if body.len() != PAGE_LINE.len() * PAGE_REPEAT {
            return Err(std::io::Error::other("short HTTP body"));
        }
        total += body.len() as u64;
    }
    Ok(total)
}

/// A tiny HTTP/1.0 server on `127.0.0.1` (ephemeral port): a few threads
/// accept on one listener, read a request head, answer the page, close.
/// Dropping it stops and joins the threads.
pub(crate) struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    const THREADS: usize = 4;

    pub(crate) fn start() -> std::io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut page = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n".to_vec();
        page.extend_from_slice(
            format!("Content-Length: {}\r\n\r\n", PAGE_LINE.len() * PAGE_REPEAT).as_bytes(),
        );
        for _ in 0..PAGE_REPEAT {
            page.extend_from_slice(PAGE_LINE);
        }
        let page: Arc<[u8]> = page.into();
        let mut threads = Vec::with_capacity(Self::THREADS);
        for _ in 0..Self::THREADS {
            let listener = listener.try_clone()?;
            let stop = Arc::clone(&stop);
            let page = Arc::clone(&page);
            threads.push(std::thread::spawn(move || serve(&listener, &stop, &page)));
        }
        Ok(Server {
            addr,
            stop,
            threads,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn serve(listener: &TcpListener, stop: &AtomicBool, page: &[u8]) {
    let mut buf = [0u8; 1024];
    // Relaxed: a plain stop request; the wake-up connection that follows it
    // is what makes `accept` return.
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut s, _)) = listener.accept() else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut head = Vec::new();
        let ok = loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break false,
                Ok(n) => {
                    head.extend_from_slice(&buf[..n]);
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        break true;
                    }
                    if head.len() > 16 * 1024 {
                        break false;
                    }
                }
            }
        };
        if ok {
            let _ = s.write_all(page);
        }
        let _ = s.shutdown(Shutdown::Write);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for _ in &self.threads {
            let _ = TcpStream::connect(self.addr);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What the workloads need: the data file and the server.
///
/// The file lives in a private directory (mode 0700, random name, made by
/// `tempfile`, which never reuses an existing one), so no other user can plant a symlink or a file of their
/// own where it is written, as they could at a predictable
/// `/tmp/pep371-<pid>.txt`.
pub(crate) struct Fixture {
    /// Removed with its file on drop, by the process that made it only.
    dir: Option<tempfile::TempDir>,
    owner_pid: u32,
    file: PathBuf,
    server: Server,
}

impl Fixture {
    pub(crate) fn new() -> std::io::Result<Fixture> {
        use std::os::unix::fs::PermissionsExt;
        // Mode 0700 asked for explicitly: tempfile's default follows the
        // umask (0755 here).
        let dir = tempfile::Builder::new()
            .prefix("pep371-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()?;
        let file = dir.path().join("data.txt");
        make_file(&file)?;
        let server = Server::start()?;
        Ok(Fixture {
            dir: Some(dir),
            owner_pid: std::process::id(),
            file,
            server,
        })
    }

    /// One call of `workload`, as a job any thread or forked process can
    /// run. Errors and wrong results panic (a worker's panic fails the run).
    pub(crate) fn job(&self, workload: &str) -> Job {
        match workload {
            // An indirect call the optimiser cannot remove.
            "empty_func" => Arc::new(|| black_box(empty_func as fn())()),
            "fibonacci" => Arc::new(|| {
                black_box(fibonacci(black_box(FIB_STEPS)));
            }),
            "crunch_primes" => Arc::new(|| {
                assert_eq!(crunch_primes(black_box(PRIME_LIMIT)), PRIME_SUM);
            }),
            "file_io" => {
                let path = self.file.clone();
                Arc::new(move || {
                    black_box(file_io(&path).expect("file_io"));
                })
            }
            "url_get" => {
                let addr = self.server.addr();
                Arc::new(move || {
                    black_box(url_get(addr).expect("url_get"));
                })
            }
            other => unreachable!("unknown workload {other}"),
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if std::process::id() != self.owner_pid {
            // A forked copy: the directory is the parent's.
            std::mem::forget(self.dir.take());
        }
    }
}

/// One call of a workload.
pub(crate) type Job = Arc<dyn Fn() + Send + Sync>;

/// Runs `job` by `mode` with `workers` workers once; the wall time.
///
/// # Errors
///
/// A process that could not be started or did not exit with 0 (its panic
/// message included), or a thread that panicked.
pub(crate) fn run_once(job: &Job, mode: &str, workers: usize) -> Result<Duration, String> {
    let start = Instant::now();
    match mode {
        "serial" => {
            for _ in 0..workers {
                job();
            }
        }
        "threads" => {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let job = Arc::clone(job);
                    std::thread::spawn(move || job())
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| "a worker thread panicked".to_owned())?;
            }
        }
        "processes" => {
            let procs = (0..workers)
                .map(|_| {
                    let job = Arc::clone(job);
                    let b = Process::new(move || job()).start_method(StartMethod::Fork);
                    // SAFETY: the only other threads are the loopback HTTP
                    // server's (`Server`), which take no lock of this
                    // process beyond `malloc`'s (fork-safe in glibc): they
                    // accept, read and write their own sockets. The jobs
                    // compute, read a file and open sockets by address (no
                    // resolver), so the child takes no lock those threads
                    // may hold.
                    unsafe { b.allow_fork_with_threads() }.start()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("starting a worker process: {e}"))?;
            for p in procs {
                let status = p.join().map_err(|e| format!("worker process: {e}"))?;
                if !status.success() {
                    return Err(format!("worker process ended with {status}"));
                }
            }
        }
        other => unreachable!("unknown mode {other}"),
    }
    Ok(start.elapsed())
}

/// The best (shortest) of `runs` runs.
///
/// # Errors
///
/// The first failed run's error.
pub(crate) fn best_of(runs: usize, job: &Job, mode: &str, workers: usize) -> Result<f64, String> {
    let mut best = f64::INFINITY;
    for _ in 0..runs.max(1) {
        best = best.min(run_once(job, mode, workers)?.as_secs_f64());
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fibonacci_wraps_like_python() {
        assert_eq!(fibonacci(0), 0);
        assert_eq!(fibonacci(10), 55);
        assert_eq!(fibonacci(93), 12_200_160_415_121_876_738);
        // F(94) overflows u64: Python's `% 2**64` keeps the low 64 bits.
        assert_eq!(
            fibonacci(94),
            ((19_740_274_219_868_223_167u128) % (1u128 << 64)) as u64
        );
    }

    #[test]
    fn primes_below() {
        assert_eq!(crunch_primes(10), 2 + 3 + 5 + 7);
        assert_eq!(crunch_primes(PRIME_LIMIT), PRIME_SUM);
    }

    #[test]
    fn file_and_server_round_trip() {
        let fx = Fixture::new().unwrap();
        assert_eq!(
            std::fs::metadata(&fx.file).unwrap().len(),
            (FILE_LINES * 75) as u64
        );
        // A seek into the last line reads an empty next line: rare, allowed.
        assert!(file_io(&fx.file).unwrap() > (FILE_SEEKS * 75 / 2) as u64);
        assert_eq!(
            url_get(fx.server.addr()).unwrap(),
            (URL_FETCHES * PAGE_LINE.len() * PAGE_REPEAT) as u64
        );
        // The file sits in a private directory, gone with the fixture.
        use std::os::unix::fs::PermissionsExt;
        let dir = fx.file.parent().unwrap().to_owned();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(fx);
        assert!(!dir.exists());
    }
}
