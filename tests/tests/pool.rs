//! The process pool across real processes: results exactly once, panics
//! and killed workers failing only their tasks, every start method, and
//! nothing left behind.
//!
//! Own harness (`harness = false`): the pool forks from the main thread,
//! and spawned workers re-run this binary, whose `main` calls
//! `multiproc::init()` first.

use std::time::Duration;

use multiproc::pool::{Pool, TaskError};
use multiproc_tests::process_support::{run_tests, Test};

const WATCHDOG: Duration = Duration::from_secs(120);

fn square(x: u64) -> u64 {
    x * x
}

fn map_of_numbers_and_strings() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(
        pool.map(square, 0..10u64).unwrap(),
        (0..10u64).map(|x| x * x).collect::<Vec<_>>()
    );
    let words: Vec<String> = vec!["a".into(), "bb".into(), "".into()];
    assert_eq!(pool.map(|s: String| s.len(), words).unwrap(), vec![1, 2, 0]);
    let empty: Vec<u64> = pool.map(square, Vec::<u64>::new()).unwrap();
    assert!(empty.is_empty());
}

fn panics_fail_only_their_item() {
    let pool = Pool::new(2).unwrap();
    let r = pool
        .map_results(
            |x: u64| {
                if x == 3 {
                    panic!("three is bad");
                }
                x + 1
            },
            0..6u64,
        )
        .unwrap();
    for (i, r) in r.iter().enumerate() {
        if i == 3 {
            match r {
                Err(TaskError::Panicked(m)) => assert!(m.contains("three is bad"), "{m}"),
                other => panic!("{other:?}"),
            }
        } else {
            assert_eq!(r.as_ref().unwrap(), &(i as u64 + 1));
        }
    }
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
}

fn main() {
    multiproc::init();
    macro_rules! tests {
        ($($t:ident),* $(,)?) => { &[$(Test { name: stringify!($t), run: $t }),*] };
    }
    run_tests(
        tests![map_of_numbers_and_strings, panics_fail_only_their_item],
        WATCHDOG,
    );
}
