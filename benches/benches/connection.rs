//! `multiproc::connection` against Python's `multiprocessing.connection`,
//! in one run (issue 11's "Benchmarks").
//!
//! `cargo bench -p multiproc-benches --bench connection`
//!
//! | group | what |
//! |---|---|
//! | `conn_round_trip_8B` | `send_bytes` of 8 bytes, `recv_bytes_into` of the echo; Unix socket and loopback TCP |
//! | `conn_echo_1MiB` | a 1 MiB message sent and its echo received (throughput: 1 MiB per echo) |
//! | `conn_handshake` | `Client::connect` to a `Listener` (both rounds of the `{sha256}` handshake) |
//!
//! The echo server (and the accepting listener) is a child forked with
//! [`multiproc::Process`]; Python's script does the same with a forked
//! `multiprocessing.Process`. After criterion's figures, the bench measures
//! the same figures the way `python/connection_bench.py` does (median of
//! five batches), runs that script, and prints both side by side with the
//! ratio. `CONN_BENCH_SKIP_PYTHON=1` skips the Python run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use multiproc::connection::{Address, Client, ConnectionError, Listener, SocketConnection};
use multiproc::Process;

const KEY: &[u8] = b"multiproc connection bench key";
const MIB: usize = 1 << 20;

/// A forked child that accepts one client and echoes until it leaves.
fn echo_server(kind: &str) -> (Process, SocketConnection) {
    let at = if kind == "unix" {
        Address::unique_unix()
    } else {
        Address::loopback()
    };
    let l = Listener::bind(&at, KEY).unwrap();
    let addr = l.address().clone();
    let p = Process::new(move || {
        let mut c = l.accept().unwrap();
        let mut buf = vec![0u8; 2 * MIB];
        loop {
            match c.recv_bytes_into(&mut buf) {
                Ok(n) => c.send_bytes(&buf[..n]).unwrap(),
                Err(ConnectionError::Closed) => break,
                Err(e) => panic!("echo: {e}"),
            }
        }
    })
    .start()
    .unwrap();
    let c = Client::connect(&addr, KEY).unwrap();
    (p, c)
}

/// A forked child that accepts (and drops) clients until one says `stop`.
fn accept_server(kind: &str) -> (Process, Address) {
    let at = if kind == "unix" {
        Address::unique_unix()
    } else {
        Address::loopback()
    };
    let l = Listener::bind(&at, KEY).unwrap();
    let addr = l.address().clone();
    let p = Process::new(move || loop {
        let mut c = l.accept().unwrap();
        if c.recv_bytes(16).is_ok_and(|m| m == b"stop") {
            break;
        }
    })
    .start()
    .unwrap();
    (p, addr)
}

fn stop(p: Process, addr: &Address) {
    Client::connect(addr, KEY)
        .unwrap()
        .send_bytes(b"stop")
        .unwrap();
    let st = p.join_timeout(Duration::from_secs(30)).unwrap();
    assert!(st.success());
}

fn round_trip(c: &mut SocketConnection, buf: &mut [u8]) {
    c.send_bytes(b"12345678").unwrap();
    black_box(c.recv_bytes_into(buf).unwrap());
}

fn echo(c: &mut SocketConnection, msg: &[u8], buf: &mut [u8]) {
    c.send_bytes(msg).unwrap();
    assert_eq!(c.recv_bytes_into(buf).unwrap(), msg.len());
}

fn finish(p: Process, c: SocketConnection) {
    drop(c);
    let st = p.join_timeout(Duration::from_secs(30)).unwrap();
    assert!(st.success());
}

fn conn_round_trip(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("conn_round_trip_8B");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(1000));
    for kind in ["unix", "tcp"] {
        let (p, mut c) = echo_server(kind);
        let mut buf = [0u8; 64];
        g.bench_function(kind, |b| b.iter(|| round_trip(&mut c, &mut buf)));
        finish(p, c);
    }
    g.finish();
}

fn conn_echo(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("conn_echo_1MiB");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(1500))
        .throughput(Throughput::Bytes(MIB as u64));
    let msg = vec![7u8; MIB];
    for kind in ["unix", "tcp"] {
        let (p, mut c) = echo_server(kind);
        let mut buf = vec![0u8; MIB];
        g.bench_function(kind, |b| b.iter(|| echo(&mut c, &msg, &mut buf)));
        finish(p, c);
    }
    g.finish();
}

fn conn_handshake(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("conn_handshake");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_millis(1000));
    for kind in ["unix", "tcp"] {
        let (p, addr) = accept_server(kind);
        g.bench_function(kind, |b| {
            b.iter(|| drop(Client::connect(&addr, KEY).unwrap()))
        });
        stop(p, &addr);
    }
    g.finish();
}

/// Median over five batches of `per` calls, in seconds per call (the
/// Python script's method).
fn median_of_batches(mut f: impl FnMut(), per: usize) -> f64 {
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per {
                f();
            }
            t.elapsed().as_secs_f64() / per as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[2]
}

/// This side's figures, keyed as the Python script's.
fn ours() -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for kind in ["unix", "tcp"] {
        let (p, mut c) = echo_server(kind);
        let mut buf = vec![0u8; MIB];
        for _ in 0..200 {
            round_trip(&mut c, &mut buf);
        }
        let rt = median_of_batches(|| round_trip(&mut c, &mut buf), 2000);
        out.push((format!("rt_us_{kind}"), rt * 1e6));
        let msg = vec![7u8; MIB];
        for _ in 0..5 {
            echo(&mut c, &msg, &mut buf);
        }
        let e = median_of_batches(|| echo(&mut c, &msg, &mut buf), 50);
        out.push((format!("echo_gbps_{kind}"), MIB as f64 / e / 1e9));
        finish(p, c);

        let (p, addr) = accept_server(kind);
        for _ in 0..5 {
            drop(Client::connect(&addr, KEY).unwrap());
        }
        let hs = median_of_batches(|| drop(Client::connect(&addr, KEY).unwrap()), 100);
        out.push((format!("hs_ms_{kind}"), hs * 1e3));
        stop(p, &addr);
    }
    out
}

fn python() -> Option<serde_json::Value> {
    if std::env::var_os("CONN_BENCH_SKIP_PYTHON").is_some() {
        eprintln!("python: skipped (CONN_BENCH_SKIP_PYTHON set)");
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/connection_bench.py");
    match std::process::Command::new("python3").arg(script).output() {
        Ok(out) if out.status.success() => serde_json::from_slice(&out.stdout).ok(),
        Ok(out) => {
            eprintln!("python: failed: {}", String::from_utf8_lossy(&out.stderr));
            None
        }
        Err(e) => {
            eprintln!("python: not run ({e})");
            None
        }
    }
}

fn summary() {
    let ours = ours();
    let py = python();
    if let Some(v) = py.as_ref().and_then(|p| p.get("python")) {
        eprintln!("=== multiproc::connection vs Python {v} multiprocessing.connection ===");
    } else {
        eprintln!("=== multiproc::connection ===");
    }
    eprintln!(
        "{:<16} {:>12} {:>12} {:>8}",
        "figure", "multiproc", "python", "ratio"
    );
    for (k, v) in ours {
        let p = py.as_ref().and_then(|p| p.get(&k)).and_then(|x| x.as_f64());
        // Higher is better for throughput, lower for times: the ratio is
        // always "how many times better multiproc is".
        let ratio = p.map(|p| if k.starts_with("echo") { v / p } else { p / v });
        eprintln!(
            "{:<16} {:>12.3} {:>12} {:>8}",
            k,
            v,
            p.map_or("-".into(), |p| format!("{p:.3}")),
            ratio.map_or("-".into(), |r| format!("{r:.2}x"))
        );
    }
}

criterion_group!(benches, conn_round_trip, conn_echo, conn_handshake);

fn main() {
    multiproc::init();
    benches();
    Criterion::default().configure_from_args().final_summary();
    if !std::env::args().any(|a| a == "--list") {
        summary();
    }
}
