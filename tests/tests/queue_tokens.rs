//! Tokens of MPMC queue handles between real processes: each token is
//! claimed once, and a token claimed twice (by two processes) cannot take
//! away the count of the handles its maker still holds.
//!
//! These tests fork (through `multiproc::spawn`) from a single-threaded
//! process: their own harness (no libtest threads), one process per test
//! under cargo-nextest.

use std::time::Duration;

use multiproc_tests::process_support::{run_tests, Test};

use multiproc::queue::{Queue, QueueError, Receiver, Sender, TryRecvError};

const WATCHDOG: Duration = Duration::from_secs(60);

/// Joins `p`, returning its exit code (killing it and failing after the
/// watchdog).
fn join_code(p: &multiproc::Process) -> i32 {
    match p.join_timeout(WATCHDOG) {
        Ok(s) => s.code().unwrap_or(-1),
        Err(multiproc::process::JoinError::Timeout) => {
            let _ = p.kill();
            panic!("child {} did not finish in time (deadlock?)", p.pid());
        }
        Err(e) => panic!("child {}: {e}", p.pid()),
    }
}

/// Claims `token` as a sender in a new process, sends `v` and drops the
/// handle. Exit code 0: claimed and sent; 2: already claimed; 1: another
/// failure.
fn claim_and_send(token: Vec<u8>, v: u64) -> multiproc::Process {
    multiproc::spawn(move || -> i32 {
        match Sender::<u64>::from_token(&token) {
            Ok(tx) => match tx.send(v) {
                Ok(()) => 0,
                Err(_) => 1,
            },
            Err(QueueError::AlreadyClaimed) => 2,
            Err(e) => {
                eprintln!("claim: {e}");
                1
            }
        }
    })
    .unwrap()
}

fn a_sender_token_claimed_twice_leaves_the_makers_sender_counted() {
    let (tx, rx) = Queue::<u64>::new(16).unique_name().channel().unwrap();
    let token = tx.to_token().unwrap();
    // Two processes claim the same token, one after the other: the second
    // claim is refused and takes nothing away.
    let a = claim_and_send(token.clone(), 1);
    assert_eq!(join_code(&a), 0, "the first claim");
    let b = claim_and_send(token.clone(), 2);
    assert_eq!(join_code(&b), 2, "the second claim must be AlreadyClaimed");
    // In this process too.
    assert!(matches!(
        Sender::<u64>::from_token(&token),
        Err(QueueError::AlreadyClaimed)
    ));
    assert_eq!(rx.recv_timeout(WATCHDOG), Ok(1));
    // Both claimers are gone; the maker's sender is alive: the queue is
    // open.
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert!(!rx.is_disconnected());
    tx.send(3).unwrap();
    assert_eq!(rx.recv_timeout(WATCHDOG), Ok(3));
    drop(tx);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

fn concurrent_claims_of_one_token_succeed_once() {
    let (tx, rx) = Queue::<u64>::new(16).unique_name().channel().unwrap();
    let token = tx.to_token().unwrap();
    let claimers: Vec<_> = (0..4)
        .map(|i| claim_and_send(token.clone(), 10 + i))
        .collect();
    let mut codes: Vec<i32> = claimers.iter().map(join_code).collect();
    codes.sort_unstable();
    assert_eq!(codes, [0, 2, 2, 2]);
    let v = rx.recv_timeout(WATCHDOG).unwrap();
    assert!((10..14).contains(&v));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert!(!rx.is_disconnected());
    tx.send(5).unwrap();
    assert_eq!(rx.recv_timeout(WATCHDOG), Ok(5));
}

fn receiver_tokens_are_claimed_once_each() {
    let (tx, rx) = Queue::<u64>::new(16).unique_name().channel().unwrap();
    let t1 = rx.to_token().unwrap();
    let t2 = rx.to_token().unwrap();
    assert_ne!(t1, t2, "two tokens of one handle differ");
    let r1 = Receiver::<u64>::from_token(&t1).unwrap();
    assert!(matches!(
        Receiver::<u64>::from_token(&t1),
        Err(QueueError::AlreadyClaimed)
    ));
    let r2 = Receiver::<u64>::from_token(&t2).unwrap();
    drop((r1, r2));
    // The maker's receiver still counts: senders are not disconnected.
    assert!(!tx.is_disconnected());
    tx.send(7).unwrap();
    assert_eq!(rx.try_recv(), Ok(7));
}

fn main() {
    multiproc::init();
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![
            a_sender_token_claimed_twice_leaves_the_makers_sender_counted,
            concurrent_claims_of_one_token_succeed_once,
            receiver_tokens_are_claimed_once_each,
        ],
        WATCHDOG,
    )
}
