//! The MPI pool's messages (`multiproc::mpi`'s wire, built here without
//! MPI): TASK messages as a rank splits them, RESULT messages as the master
//! reads them, and HELLO.
//!
//! On every input:
//! - as a TASK message: every chunk that parses encodes back to exactly the
//!   bytes it took, and the chunks taken never exceed the input;
//! - as a RESULT message: reading never panics and never reserves room for
//!   more outcomes than the bytes can hold (libFuzzer's `-rss_limit_mb` and
//!   malloc limit catch an allocation of an announced size);
//! - as a HELLO message: a message that parses, with a status of 0 or 1 and
//!   UTF-8 text, encodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::fuzzing::{mpi_hello, mpi_result_chunks, mpi_task_chunks};

fuzz_target!(|data: &[u8]| {
    let (chunks, whole) = mpi_task_chunks(data);
    let mut at = 0usize;
    for (enc, used) in &chunks {
        assert_eq!(enc.len(), *used);
        assert_eq!(&data[at..at + used], &enc[..]);
        at += used;
    }
    assert!(at <= data.len());
    if whole {
        assert_eq!(at, data.len());
    }

    let (outcomes, _) = mpi_result_chunks(data);
    // Each outcome takes at least 5 bytes, each chunk header 32.
    let total: usize = outcomes.iter().sum();
    assert!(total * 5 + outcomes.len() * 32 <= data.len());

    if let Some(enc) = mpi_hello(data) {
        let status_ok = data.len() >= 4 && u32::from_le_bytes(data[..4].try_into().unwrap()) <= 1;
        if status_ok && std::str::from_utf8(&data[24.min(data.len())..]).is_ok() {
            assert_eq!(enc, data);
        }
    }
});
