//! `multiproc::pipe` and `multiproc::queue::bytes_channel` between real
//! processes: sizes up to 1 MiB, `Pod` values, poll, zero-copy calls,
//! disconnection (clean and by `kill -9`) with count and checksum, serde
//! frames, and hand-over by fork and by token to a spawned process.
//!
//! A custom harness (`harness = false`): the spawn test re-runs this
//! binary, whose `main` registers the entry points and calls
//! `multiproc::init()` first. Every test runs under a watchdog.

use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc::pipe::{Pipe, PipeError, PipeRecvError, PipeSendError, DEFAULT_MAX_MESSAGE};
use multiproc::{pipe, pipe_oneway, queue, Process, StartMethod};
use multiproc_tests::checksum;
use multiproc_tests::process_support::{run_tests, Test};
use multiproc_tests::Cells;

const WATCHDOG: Duration = Duration::from_secs(60);
/// Generous bound for "noticed a death": the design says ~25 ms.
const DEATH_BOUND: Duration = Duration::from_secs(5);

fn join_ok(p: &Process) {
    let st = p.join_timeout(WATCHDOG).expect("join (child hung?)");
    assert!(st.success(), "child failed: {st:?}");
}

/// The bytes of message `i` of length `len`: a pattern any loss, reorder or
/// tear shows.
fn pattern(i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (i.wrapping_mul(31) as usize ^ k.wrapping_mul(7)) as u8)
        .collect()
}

/// Echoes every message back until the other end is gone.
fn echo(mut c: multiproc::Connection) -> i32 {
    loop {
        match c.recv_bytes() {
            Ok(m) => {
                if c.send_bytes(&m).is_err() {
                    return 2;
                }
            }
            Err(PipeRecvError::Disconnected) => return 0,
            Err(_) => return 3,
        }
    }
}

// ---------------------------------------------------------------------------

/// Ping-pong across a fork at sizes 0, 1, 4096 and 1 MiB, then a thousand
/// `Pod` round trips; the child sees the parent's end go and exits.
fn duplex_ping_pong_sizes() {
    let (mut a, b) = pipe().unwrap();
    assert_eq!(a.max_message(), DEFAULT_MAX_MESSAGE);
    let child = Process::new(move || echo(b)).start().unwrap();
    for (i, len) in [0usize, 1, 4096, 1 << 20, 3, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let m = pattern(i as u64, len);
        a.send_bytes(&m).unwrap();
        assert_eq!(a.recv_bytes_timeout(WATCHDOG).unwrap(), m, "size {len}");
    }
    for i in 0..1000u64 {
        a.send(&i).unwrap();
        assert_eq!(a.recv::<u64>().unwrap(), i);
    }
    a.close();
    join_ok(&child);
}

/// Sizes and errors in one process.
fn sizes_and_errors() {
    // The default maximum is accepted, one byte more is not.
    let (mut a, mut b) = pipe().unwrap();
    let big = vec![5u8; DEFAULT_MAX_MESSAGE as usize + 1];
    assert!(matches!(
        a.send_bytes(&big),
        Err(PipeSendError::TooLarge { len, max }) if len == max + 1 && max == DEFAULT_MAX_MESSAGE
    ));
    a.send_bytes(&big[1..]).unwrap();
    assert_eq!(b.recv_bytes().unwrap().len(), DEFAULT_MAX_MESSAGE as usize);
    // A small pipe: full, timeout, too large.
    let (mut a, mut b) = Pipe::new().max_message(100).ring_size(256).open().unwrap();
    assert!(matches!(
        a.send_bytes(&[0; 101]),
        Err(PipeSendError::TooLarge { len: 101, max: 100 })
    ));
    a.send_bytes(&[1; 100]).unwrap();
    a.send_bytes(&[2; 100]).unwrap();
    assert!(matches!(
        a.send_bytes_timeout(&[3; 100], Duration::from_millis(30)),
        Err(PipeSendError::Timeout)
    ));
    // Buffer too small: the message stays.
    let mut small = [0u8; 10];
    assert!(matches!(
        b.recv_bytes_into(&mut small),
        Err(PipeRecvError::BufferTooSmall { needed: 100 })
    ));
    let mut buf = [0u8; 128];
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 100);
    assert_eq!(&buf[..100], &[1; 100][..]);
    // Zero-copy calls.
    assert_eq!(
        b.recv_with(|m| m.iter().map(|&x| u64::from(x)).sum::<u64>())
            .unwrap(),
        200
    );
    a.send_with(4, |m| m.copy_from_slice(b"abcd")).unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"abcd");
    // Pod values and the wrong size.
    a.send(&0x1234_5678_9abc_def0u64).unwrap();
    assert!(matches!(
        b.recv::<u32>(),
        Err(PipeRecvError::WrongSize {
            expected: 4,
            got: 8
        })
    ));
    a.send(&[1.5f32, 2.5]).unwrap();
    assert_eq!(b.recv::<[f32; 2]>().unwrap(), [1.5, 2.5]);
    // Both directions.
    b.send(&7u16).unwrap();
    assert_eq!(a.recv::<u16>().unwrap(), 7);
    assert!(matches!(
        b.recv_bytes_timeout(Duration::from_millis(20)),
        Err(PipeRecvError::Timeout)
    ));
    // Drop: the other end drains, then Disconnected, both ways.
    a.send_bytes(b"last").unwrap();
    drop(a);
    assert!(b.is_disconnected());
    assert_eq!(b.recv_bytes().unwrap(), b"last");
    assert!(matches!(b.recv_bytes(), Err(PipeRecvError::Disconnected)));
    assert!(matches!(
        b.send_bytes(b"x"),
        Err(PipeSendError::Disconnected)
    ));
    // Bad sizes.
    assert!(matches!(
        Pipe::new().ring_size(100).open(),
        Err(PipeError::InvalidSize { .. })
    ));
    assert!(matches!(
        Pipe::new().ring_size(256).max_message(121).open(),
        Err(PipeError::InvalidSize { .. })
    ));
    // One-way: directions, and the error text.
    let (mut r, mut w) = pipe_oneway().unwrap();
    assert!(r.readable() && !r.writable() && w.writable() && !w.readable());
    assert!(matches!(
        r.send_bytes(b"no"),
        Err(PipeSendError::NotWritable)
    ));
    assert!(matches!(w.recv_bytes(), Err(PipeRecvError::NotReadable)));
    assert!(!w.poll(Duration::ZERO));
    w.send_bytes(b"yes").unwrap();
    assert_eq!(r.recv_bytes().unwrap(), b"yes");
    assert_eq!(
        PipeRecvError::Disconnected.to_string(),
        "the other end of the pipe is gone"
    );
    // An anonymous pipe has no token.
    assert!(matches!(
        r.into_token(),
        Err(PipeError::NotTransferable { .. })
    ));
}

/// `poll` times out on an empty pipe, sees a message sent by another
/// process, and sees the other end go.
fn poll_with_timeout() {
    let cells = Cells::leaked();
    let (mut a, mut b) = pipe().unwrap();
    assert!(!a.poll(Duration::from_millis(30)));
    assert!(!a.poll(Duration::ZERO));
    let child = Process::new(move || {
        cells.wait_for(0, 1);
        b.send_bytes(b"hi").unwrap();
        cells.wait_for(0, 2);
    })
    .start()
    .unwrap();
    cells.get(0).store(1, Ordering::Release);
    assert!(a.poll(WATCHDOG));
    assert!(a.poll(Duration::ZERO), "poll does not consume");
    assert_eq!(a.recv_bytes().unwrap(), b"hi");
    assert!(!a.poll(Duration::from_millis(10)));
    cells.get(0).store(2, Ordering::Release);
    assert!(a.poll(WATCHDOG), "a gone end makes poll true");
    assert!(matches!(a.recv_bytes(), Err(PipeRecvError::Disconnected)));
    join_ok(&child);
}

/// The writer is killed with SIGKILL mid-stream: the reader gets every
/// completed message, in order and intact, then Disconnected.
fn writer_killed_mid_stream() {
    let cells = Cells::leaked();
    let (mut r, mut w) = Pipe::new()
        .duplex(false)
        .ring_size(1 << 16)
        .max_message(4096)
        .open()
        .map(|(w, r)| (r, w))
        .unwrap();
    let child = Process::new::<_, ()>(move || {
        let mut i = 0u64;
        loop {
            let len = 8 + (i as usize * 37) % 4000;
            w.send_with(len, |m| {
                m[..8].copy_from_slice(&i.to_le_bytes());
                m[8..].copy_from_slice(&pattern(i, len - 8));
            })
            .unwrap();
            i += 1;
            cells.get(0).store(i, Ordering::Release);
        }
    })
    .start()
    .unwrap();
    let (mut next, mut sum) = (0u64, 0u64);
    let take = |m: &[u8], next: &mut u64, sum: &mut u64| {
        let i = u64::from_le_bytes(m[..8].try_into().unwrap());
        assert_eq!(i, *next, "lost or duplicated message");
        assert_eq!(m.len(), 8 + (i as usize * 37) % 4000);
        assert_eq!(&m[8..], &pattern(i, m.len() - 8)[..], "torn message {i}");
        *sum = checksum(*sum, i);
        *next += 1;
    };
    while next < 20_000 {
        let m = r.recv_bytes_timeout(WATCHDOG).unwrap();
        take(&m, &mut next, &mut sum);
    }
    child.kill().unwrap();
    child.join_timeout(WATCHDOG).unwrap();
    let completed = cells.get(0).load(Ordering::Acquire);
    loop {
        match r.recv_with(|m| take(m, &mut next, &mut sum)) {
            Ok(()) => {}
            Err(PipeRecvError::Disconnected) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    // Every completed send arrived (one more may have been published just
    // before the counter moved).
    assert!(
        next == completed || next == completed + 1,
        "{next} vs {completed}"
    );
    assert_eq!(sum, (0..next).fold(0, checksum));
    assert!(matches!(
        r.recv_bytes_timeout(DEATH_BOUND),
        Err(PipeRecvError::Disconnected)
    ));
}

/// The reader is killed: a writer blocked on the full pipe gets
/// Disconnected instead of waiting forever.
fn reader_killed() {
    let cells = Cells::leaked();
    let (mut a, mut b) = Pipe::new()
        .ring_size(4096)
        .max_message(1000)
        .open()
        .unwrap();
    let child = Process::new::<_, ()>(move || {
        for _ in 0..10 {
            b.recv_bytes().unwrap();
        }
        cells.get(0).store(1, Ordering::Release);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
    .start()
    .unwrap();
    for i in 0..10 {
        a.send_bytes(&pattern(i, 1000)).unwrap();
    }
    cells.wait_for(0, 1);
    // Fill the ring, then kill the reader while the writer waits.
    let mut sent = 0;
    while a
        .send_bytes_timeout(&[0; 1000], Duration::from_millis(50))
        .is_ok()
    {
        sent += 1;
        assert!(sent < 100, "the ring never filled");
    }
    child.kill().unwrap();
    child.join_timeout(WATCHDOG).unwrap();
    assert!(matches!(
        a.send_bytes_timeout(&[0; 1000], DEATH_BOUND),
        Err(PipeSendError::Disconnected)
    ));
    assert!(matches!(
        a.send_bytes(&[0; 1]),
        Err(PipeSendError::Disconnected)
    ));
    assert!(a.is_disconnected());
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Job {
    id: u32,
    name: String,
    data: Vec<u64>,
    tag: Option<char>,
}

/// Non-Pod values as postcard frames across a fork, both ways; a frame
/// that does not decode is a typed error.
fn serde_round_trip() {
    let (mut a, mut b) = pipe().unwrap();
    let child = Process::new(move || -> Result<(), Box<dyn std::error::Error>> {
        while let Ok(mut job) = b.recv_serde::<Job>() {
            job.name.push_str(" done");
            job.data.reverse();
            b.send_serde(&job)?;
        }
        Ok(())
    })
    .start()
    .unwrap();
    for id in 0..50u32 {
        let job = Job {
            id,
            name: format!("job {id}"),
            data: (0..u64::from(id) * 100).collect(),
            tag: (id % 2 == 0).then_some('é'),
        };
        a.send_serde(&job).unwrap();
        let back: Job = a.recv_serde_timeout(WATCHDOG).unwrap();
        assert_eq!(back.id, id);
        assert_eq!(back.name, format!("job {id} done"));
        assert_eq!(
            back.data,
            job.data.iter().rev().copied().collect::<Vec<_>>()
        );
        assert_eq!(back.tag, job.tag);
    }
    drop(a);
    join_ok(&child);
    // Garbage is a decode error, not a panic.
    let (mut a, mut b) = pipe().unwrap();
    a.send_bytes(&[0xff; 3]).unwrap();
    assert!(matches!(
        b.recv_serde::<Job>(),
        Err(PipeRecvError::Decode(_))
    ));
    // And through the byte queue.
    let (mut tx, mut rx) = queue::bytes_channel(1 << 12, 512).unwrap();
    tx.send_serde(&("x".to_owned(), vec![1u8, 2])).unwrap();
    assert_eq!(
        rx.recv_serde::<(String, Vec<u8>)>().unwrap(),
        ("x".to_owned(), vec![1, 2])
    );
}

/// The byte queue across a fork: messages of every size up to the maximum,
/// count and checksum, then Disconnected.
fn bytes_channel_across_fork() {
    let (mut tx, mut rx) = queue::bytes_channel(1 << 14, 5000).unwrap();
    assert!(matches!(
        queue::bytes_channel(1 << 12, 5000),
        Err(PipeError::InvalidSize { .. })
    ));
    const N: u64 = 20_000;
    let child = Process::new(move || -> Result<(), Box<dyn std::error::Error>> {
        for i in 0..N {
            tx.send(&pattern(i, (i as usize * 13) % 5001))?;
        }
        assert!(tx.send(&[0; 5001]).is_err());
        Ok(())
    })
    .start()
    .unwrap();
    let mut buf = vec![0u8; 5000];
    let (mut n, mut sum) = (0u64, 0u64);
    loop {
        match rx.recv_into(&mut buf) {
            Ok(len) => {
                assert_eq!(len, (n as usize * 13) % 5001);
                assert_eq!(&buf[..len], &pattern(n, len)[..]);
                sum = checksum(sum, len as u64);
                n += 1;
            }
            Err(PipeRecvError::Disconnected) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(n, N);
    assert_eq!(sum, (0..N).fold(0, |s, i| checksum(s, (i * 13) % 5001)));
    join_ok(&child);
}

/// An end used in the parent before the fork keeps the roles the parent
/// claimed; the child goes on with them, and the parent's exit of its copy
/// does not disconnect.
fn end_used_before_fork_moves_to_child() {
    let (mut a, mut b) = pipe().unwrap();
    b.send_bytes(b"from parent").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"from parent");
    a.send(&1u8).unwrap();
    let child = Process::new(move || echo(b)).start().unwrap();
    assert_eq!(a.recv::<u8>().unwrap(), 1);
    for i in 0..100u64 {
        a.send(&i).unwrap();
        assert_eq!(a.recv::<u64>().unwrap(), i);
    }
    drop(a);
    join_ok(&child);
}

/// A spawned process (re-executed binary) claims an end from a token and
/// echoes; the token keeps the end alive until claimed.
fn spawn_hand_over_by_token() {
    let (mut a, b) = Pipe::new()
        .unique_name()
        .max_message(1 << 16)
        .open()
        .unwrap();
    let token = b.into_token().unwrap();
    assert!(matches!(
        multiproc::Connection::from_token(b"garbage"),
        Err(PipeError::Setup(_))
    ));
    let child = Process::entry("pipe_echo", token)
        .start_method(StartMethod::Spawn)
        .start()
        .unwrap();
    for i in 0..200u64 {
        let m = pattern(i, (i as usize * 311) % (1 << 16));
        a.send_bytes(&m).unwrap();
        assert_eq!(a.recv_bytes_timeout(WATCHDOG).unwrap(), m);
    }
    drop(a);
    join_ok(&child);
}

/// A pipe end's token is claimed once: after a spawned process claimed it,
/// a second claim (here, in this process) is refused with
/// `AlreadyClaimed` and takes nothing away (the pipe keeps working, and the
/// child sees the end of the stream only when the other end is dropped).
fn pipe_token_is_claimed_once() {
    let (mut a, b) = Pipe::new().unique_name().open().unwrap();
    let token = b.into_token().unwrap();
    let child = Process::entry("pipe_echo", token.clone())
        .start_method(StartMethod::Spawn)
        .start()
        .unwrap();
    a.send_bytes(b"first").unwrap();
    assert_eq!(a.recv_bytes_timeout(WATCHDOG).unwrap(), b"first");
    match multiproc::Connection::from_token(&token) {
        Err(PipeError::Setup(queue::QueueError::AlreadyClaimed)) => {}
        other => panic!(
            "a second claim must be refused, got {:?}",
            other.map(|_| ())
        ),
    }
    for i in 0..50u64 {
        let m = pattern(i, 100);
        a.send_bytes(&m).unwrap();
        assert_eq!(a.recv_bytes_timeout(WATCHDOG).unwrap(), m);
    }
    drop(a);
    join_ok(&child);
}

fn entry_pipe_echo(args: &[u8]) -> i32 {
    match multiproc::Connection::from_token(args) {
        Ok(c) => echo(c),
        Err(_) => 10,
    }
}

fn main() {
    multiproc::register_entry("pipe_echo", entry_pipe_echo).unwrap();
    multiproc::init();
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            duplex_ping_pong_sizes,
            sizes_and_errors,
            poll_with_timeout,
            writer_killed_mid_stream,
            reader_killed,
            serde_round_trip,
            bytes_channel_across_fork,
            end_used_before_fork_moves_to_child,
            spawn_hand_over_by_token,
            pipe_token_is_claimed_once,
        ],
        WATCHDOG,
    );
}
