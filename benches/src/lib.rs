//! Support code for multiproc's benches: aligned memory for core regions,
//! PEP 371's CPU-heavy workload (shared by the main job and the Pool
//! bench), and the IPC transfer loops ([`transfer`], shared by the main
//! job and the `ipc` bench).
#![warn(missing_docs)]

pub mod transfer;

use multiproc_core::region::Region;

#[repr(C, align(128))]
#[derive(Clone, Copy)]
struct Line([u8; 128]);

/// A zeroed, 128-byte-aligned heap buffer in which core structures are built
/// for in-process (thread-to-thread) benches.
pub struct AlignedBuf {
    lines: Box<[Line]>,
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.lines.len() * 128)
    }
}

impl AlignedBuf {
    /// At least `len` zeroed bytes.
    pub fn new(len: usize) -> Self {
        let n = len.div_ceil(128).max(1);
        Self {
            lines: vec![Line([0; 128]); n].into_boxed_slice(),
        }
    }

    /// The buffer as a region.
    pub fn region(&mut self) -> Region<'_> {
        let len = self.lines.len() * 128;
        // SAFETY: `Line` is 128 plain bytes without padding, so the boxed
        // slice is `len` initialised, exclusively borrowed bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<u8>(), len) };
        Region::from_mut_slice(bytes)
    }
}

/// PEP 371's prime limit: `crunch_primes` sums the primes below it.
pub const PRIME_LIMIT: u64 = 100_000;

/// The sum of the primes below [`PRIME_LIMIT`].
pub const PRIME_SUM: u64 = 454_396_537;

/// The sum of the primes below `limit`, each number tested by trial
/// division by every `d` with `d * d <= n` (PEP 371's `crunch_primes`, the
/// loop of `benches/python/pep371.py`).
pub fn crunch_primes(limit: u64) -> u64 {
    let mut total = 0;
    for n in 2..limit {
        let mut is_prime = true;
        let mut d = 2;
        while d * d <= n {
            if n % d == 0 {
                is_prime = false;
                break;
            }
            d += 1;
        }
        if is_prime {
            total += n;
        }
    }
    total
}
