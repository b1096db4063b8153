//! Rough one-way pipe throughput between two processes (unasserted):
//! `cargo run --release -p multiproc --example pipe_throughput`.

use std::time::Instant;

fn run(size: usize, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    let (mut r, mut w) = multiproc::pipe_oneway()?;
    let child = multiproc::Process::new(move || {
        let msg = vec![1u8; size];
        for _ in 0..n {
            w.send_bytes(&msg).unwrap();
        }
    })
    .start()?;
    let mut buf = vec![0u8; size];
    let t = Instant::now();
    for _ in 0..n {
        r.recv_bytes_into(&mut buf)?;
    }
    let dt = t.elapsed().as_secs_f64();
    child.join()?;
    println!(
        "{size:>6} B: {:>6.2} M msg/s, {:>7.1} MB/s",
        n as f64 / dt / 1e6,
        (n as f64 * size as f64) / dt / 1e6
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for _ in 0..3 {
        run(8, 5_000_000)?;
        run(4096, 500_000)?;
    }
    Ok(())
}
