//! A worker rank: it says HELLO, then serves chunks until the master says
//! STOP (or ABORT).
//!
//! With a local pool, `capacity` helper threads each take a chunk and run
//! it on the pool (`map_results`, which blocks that thread only), so the
//! pool holds up to `capacity` chunks at once; the rank's main thread alone
//! calls MPI (it receives chunks, and sends what the helpers hand back).
//! Without one, the rank runs each chunk itself as it arrives.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mpi::point_to_point::{MatchedReceiveVec, Source};
use mpi::topology::{Communicator, SimpleCommunicator};

use super::master::Backoff;
use super::outbox::Outbox;
use super::runner::{Exec, RankRunner};
use super::wire::{tags, Hello, ResultHead, TaskHead};
use crate::pool::func::address_at;
use crate::pool::Pool;

/// A chunk for a helper: its header and items.
type Work = (TaskHead, Vec<u8>);
/// What a helper hands back: a RESULT message, or a FATAL text.
type Done = Result<Vec<u8>, String>;

/// Runs one chunk; the RESULT message.
fn run_chunk(exec: Exec<'_>, head: &TaskHead, items: &[u8]) -> Done {
    // SAFETY: the master sent the offset of a `RankRunner` instance
    // (`mpi::Pool` takes it from a value of that type), and this rank runs
    // the master's executable (the fingerprint in HELLO matched, else the
    // master stopped at start), so the offset names that function here.
    let runner: RankRunner =
        unsafe { std::mem::transmute::<usize, RankRunner>(address_at(head.runner)) };
    let mut out = ResultHead::start(head);
    runner(exec, head.func, items, head.count, &mut out)?;
    Ok(out)
}

/// Serves the master until it stops this rank; the rank's exit code.
pub(crate) fn serve(
    world: &SimpleCommunicator,
    local: Result<Option<Pool>, String>,
    hello: Hello,
) -> i32 {
    let (pool, hello) = match local {
        Ok(p) => (p, hello),
        Err(e) => (
            None,
            Hello {
                ok: false,
                text: e,
                ..hello
            },
        ),
    };
    let mut out = Outbox::default();
    let send = |out: &mut Outbox, msg: Vec<u8>, tag: i32| {
        // A message too long for MPI fails its chunk's items instead.
        if let Err(e) = out.send(world, 0, tag, msg) {
            let _ = out.send(world, 0, tags::FATAL, e.into_bytes());
        }
    };
    send(&mut out, hello.encode(), tags::HELLO);
    let ok = hello.ok;
    if pool.is_none() {
        // Inline runs keep the panic message with its location, as a
        // local worker does.
        crate::pool::func::capture_panics();
    }
    let pool = pool.map(Arc::new);
    let (work_tx, work_rx) = mpsc::channel::<Work>();
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let work_rx = Arc::new(Mutex::new(work_rx));
    let mut helpers: Vec<JoinHandle<()>> = Vec::new();
    if let Some(pool) = &pool {
        for _ in 0..hello.capacity {
            let pool = Arc::clone(pool);
            let rx = Arc::clone(&work_rx);
            let tx = done_tx.clone();
            let h = std::thread::Builder::new()
                .name("multiproc-mpi-helper".into())
                .spawn(move || loop {
                    let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((head, items)) = next else { return };
                    if tx
                        .send(run_chunk(Exec::Local(&pool), &head, &items))
                        .is_err()
                    {
                        return;
                    }
                });
            match h {
                Ok(h) => helpers.push(h),
                Err(e) => {
                    send(
                        &mut out,
                        format!("cannot start a helper thread: {e}").into_bytes(),
                        tags::FATAL,
                    );
                    break;
                }
            }
        }
    }
    drop(done_tx);
    let mut in_flight = 0usize;
    let mut stopping = false;
    let mut backoff = Backoff::new();
    let master = world.process_at_rank(0);
    loop {
        let mut progressed = false;
        while let Some(probed) = master.immediate_matched_probe() {
            progressed = true;
            let (data, status) = probed.matched_receive_vec::<u8>();
            match status.tag() {
                tags::TASK => {
                    let Ok((head, items)) = TaskHead::read(&data) else {
                        send(
                            &mut out,
                            b"a task message does not parse".to_vec(),
                            tags::FATAL,
                        );
                        continue;
                    };
                    if !ok {
                        continue;
                    }
                    match &pool {
                        Some(_) => {
                            let items = items.to_vec();
                            if work_tx.send((head, items)).is_ok() {
                                in_flight += 1;
                            }
                        }
                        None => match run_chunk(Exec::Inline, &head, items) {
                            Ok(msg) => send(&mut out, msg, tags::RESULT),
                            Err(e) => send(&mut out, e.into_bytes(), tags::FATAL),
                        },
                    }
                }
                tags::STOP => stopping = true,
                tags::ABORT => {
                    // Drop what the helpers hold: the local pool's workers
                    // die with this process (the pool's zygote watches it).
                    send(&mut out, Vec::new(), tags::BYE);
                    out.flush();
                    return i32::from(!ok);
                }
                _ => {}
            }
        }
        while let Ok(done) = done_rx.try_recv() {
            progressed = true;
            in_flight -= 1;
            match done {
                Ok(msg) => send(&mut out, msg, tags::RESULT),
                Err(e) => send(&mut out, e.into_bytes(), tags::FATAL),
            }
        }
        if out.progress() {
            progressed = true;
        }
        if stopping && in_flight == 0 {
            break;
        }
        if progressed {
            backoff.reset();
        } else if let Some(nap) = backoff.idle() {
            if in_flight > 0 {
                if let Ok(done) = done_rx.recv_timeout(nap) {
                    backoff.reset();
                    in_flight -= 1;
                    match done {
                        Ok(msg) => send(&mut out, msg, tags::RESULT),
                        Err(e) => send(&mut out, e.into_bytes(), tags::FATAL),
                    }
                }
            } else {
                std::thread::sleep(nap);
            }
        }
    }
    drop(work_tx);
    for h in helpers {
        let _ = h.join();
    }
    let code = match pool.map(Arc::try_unwrap) {
        Some(Ok(mut p)) => {
            p.close();
            i32::from(p.join().is_err())
        }
        _ => 0,
    };
    send(&mut out, Vec::new(), tags::BYE);
    out.flush();
    if ok {
        code
    } else {
        1
    }
}
