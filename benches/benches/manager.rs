//! `multiproc::manager` proxy calls against Python's `SyncManager`, in
//! one run (issue 11's "Benchmarks": Manager proxy call latency).
//!
//! `cargo bench -p multiproc-benches --bench manager` (`-- --quick` for a
//! short run)
//!
//! | figure | what |
//! |---|---|
//! | `queue put+get` | `put` of 8 bytes then `get` on a queue proxy: two calls |
//! | `dict set+get` | `d["k"] = 8 bytes` then `d["k"]` on a dict proxy: two calls |
//! | `shm queue put+get` | the same on a `ShmQueueProxy` on the server's machine: through shared memory, no server call (against Python's queue proxy) |
//! | `shm queue, server` | the same `ShmQueueProxy` forced through the server (`via_server`) |
//!
//! Both sides: the server is a process of its own (forked), reached over
//! a Unix socket; each figure is the median of five batches, per
//! iteration (two proxy calls). `MANAGER_BENCH_SKIP_PYTHON=1` skips
//! `python/manager_bench.py`.

use std::process::Command;
use std::time::Instant;

use multiproc::manager::Manager;

fn median_us(mut f: impl FnMut(usize), n: usize) -> f64 {
    f(n / 10);
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            f(n);
            t.elapsed().as_secs_f64() / n as f64 * 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[2]
}

fn python(quick: bool) -> Option<(f64, f64)> {
    if std::env::var_os("MANAGER_BENCH_SKIP_PYTHON").is_some() {
        return None;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/manager_bench.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    let field = |k: &str| -> Option<f64> {
        let i = s.find(&format!("\"{k}\": "))? + k.len() + 4;
        let rest = &s[i..];
        let end = rest.find([',', '}'])?;
        rest[..end].trim().parse().ok()
    };
    Some((field("queue_us")?, field("dict_us")?))
}

fn main() {
    multiproc::init();
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = if quick { 2000 } else { 20000 };
    let m = Manager::start().expect("manager");
    let c = m.client().expect("client");
    let q = c.queue().expect("queue");
    let d = c.dict().expect("dict");
    let msg = b"12345678";
    let rq = median_us(
        |k| {
            for _ in 0..k {
                q.put(msg).unwrap();
                std::hint::black_box(q.get().unwrap());
            }
        },
        n,
    );
    let rd = median_us(
        |k| {
            for _ in 0..k {
                d.set("k", msg.as_slice()).unwrap();
                std::hint::black_box(d.get("k").unwrap());
            }
        },
        n,
    );
    let sq = c.shm_queue(1024, 1024).expect("shm queue");
    assert!(sq.is_local());
    let rs = median_us(
        |k| {
            for _ in 0..k {
                sq.put(msg).unwrap();
                std::hint::black_box(sq.get().unwrap());
            }
        },
        n * 10,
    );
    let sv = c.shm_queue(1024, 1024).expect("shm queue").via_server();
    let rv = median_us(
        |k| {
            for _ in 0..k {
                sv.put(msg).unwrap();
                std::hint::black_box(sv.get().unwrap());
            }
        },
        n,
    );
    drop((q, d, sq, sv, c, m));
    let py = python(quick);
    println!("manager proxy calls (median of 5 batches, per iteration of two calls)");
    println!(
        "{:<18} {:>12} {:>12} {:>8}",
        "figure", "multiproc", "python", "ratio"
    );
    for (name, r, p) in [
        ("queue put+get", rq, py.map(|p| p.0)),
        ("dict set+get", rd, py.map(|p| p.1)),
        ("shm queue put+get", rs, py.map(|p| p.0)),
        ("shm queue, server", rv, py.map(|p| p.0)),
    ] {
        match p {
            Some(p) => println!("{name:<18} {r:>9.3} us {p:>9.1} us {:>7.1}x", p / r),
            None => println!("{name:<18} {r:>9.3} us {:>12} {:>8}", "-", "-"),
        }
    }
}
