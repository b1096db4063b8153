//! Interoperability with Python's `multiprocessing.shared_memory`, for real,
//! with the machine's `python3` (required: the test fails with a clear
//! message if it is missing, it is never skipped).
//!
//! Both directions: Python creates and fills a segment, Rust opens it by
//! Python's name, checks and answers, Python checks the answer; and Rust
//! creates one, Python attaches by name, checks and answers, Rust checks.
//! The Python side is `tests/python/shm_peer.py`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use multiproc::shm::SharedMemory;

const WATCHDOG: Duration = Duration::from_secs(60);
const SIZE: usize = 3 * 4096 + 123;

fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| ((7 * i + 3) % 256) as u8).collect()
}

fn answer(size: usize) -> Vec<u8> {
    pattern(size).into_iter().map(|b| 255 - b).collect()
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/shm_peer.py")
}

/// `python3 shm_peer.py args..`, or a clear failure if python3 is missing.
fn python(args: &[&str]) -> Child {
    match Command::new("python3")
        .arg(script())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "python3 is required by the Python interop test and could not be run ({e}); \
             install it (apt-get install python3)"
        ),
    }
}

/// Lines of the child's stdout, read on a thread so the test can time out.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_line(rx: &mpsc::Receiver<String>, child: &mut Child) -> String {
    match rx.recv_timeout(WATCHDOG) {
        Ok(l) => l,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no line from python3 ({e}): it failed or hung");
        }
    }
}

fn wait_success(child: &mut Child) {
    let end = Instant::now() + WATCHDOG;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success(), "python3 ended with {s}");
            return;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("python3 did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn python_creates_rust_reads_and_answers() {
    let mut py = python(&["create", &SIZE.to_string()]);
    let rx = lines(&mut py);
    let name = next_line(&rx, &mut py);
    assert!(
        !name.starts_with('/'),
        "Python names have no leading slash: {name}"
    );

    let mut shm = SharedMemory::open_raw(&name).unwrap();
    assert!(!shm.is_owner());
    assert_eq!(shm.python_name(), Some(name.as_str()));
    assert!(shm.len() >= SIZE, "{} < {SIZE}", shm.len());
    let mut got = vec![0u8; SIZE];
    shm.read_at(0, &mut got).unwrap();
    assert!(got == pattern(SIZE), "Python's pattern not found");
    shm.write_at(0, &answer(SIZE)).unwrap();

    let stdin = py.stdin.as_mut().expect("piped stdin");
    stdin.write_all(b"done\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(next_line(&rx, &mut py), "ok");
    wait_success(&mut py);
    // Python unlinked its segment; our mapping stays valid.
    drop(shm);
    assert!(SharedMemory::open_raw(&name).is_err());
}

#[test]
fn rust_creates_python_attaches_and_answers() {
    // A user-chosen name without the leading slash, as Python spells them.
    let name = format!("mp_pytest_{}", std::process::id());
    let mut shm = SharedMemory::create(&name, SIZE).unwrap();
    assert_eq!(shm.name(), Some(format!("/{name}").as_str()));
    assert_eq!(shm.python_name(), Some(name.as_str()));
    shm.write_at(0, &pattern(SIZE)).unwrap();

    let mut py = python(&["attach", shm.python_name().unwrap(), &SIZE.to_string()]);
    let rx = lines(&mut py);
    assert_eq!(next_line(&rx, &mut py), "ok");
    wait_success(&mut py);

    let mut got = vec![0u8; SIZE];
    shm.read_at(0, &mut got).unwrap();
    assert!(got == answer(SIZE), "Python's answer not found");
    // Python's resource tracker did not unlink our segment when it exited.
    assert!(SharedMemory::open(&name).is_ok());
    drop(shm);
    assert!(SharedMemory::open(&name).is_err());
}
