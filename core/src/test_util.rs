//! Memory for unit tests and loom models: zeroed, 128-byte-aligned heap
//! buffers to build regions in. The one aligned test buffer of the crate.
extern crate std;

use std::boxed::Box;
use std::vec;
use std::vec::Vec;

use crate::region::Region;

/// A pid no process can have: Linux's pid_max is at most 2^22.
#[allow(dead_code)]
pub(crate) const DEAD_PID: u32 = (1 << 22) + 5;

/// One 128-byte line: a `Vec<Line>` is a zeroed, 128-aligned buffer.
#[repr(C, align(128))]
#[derive(Clone, Copy)]
pub(crate) struct Line(pub(crate) [u8; 128]);

/// A zeroed, 128-aligned buffer of at least `bytes` bytes (at least one
/// line).
pub(crate) fn buf(bytes: usize) -> Vec<Line> {
    vec![Line([0; 128]); bytes.div_ceil(128).max(1)]
}

/// The lines as bytes, for `Region::from_mut_slice`.
pub(crate) fn bytes(b: &mut [Line]) -> &mut [u8] {
    // SAFETY: Line is 128 plain bytes with no padding, so `b` is
    // `b.len() * 128` initialised bytes, borrowed mutably here.
    unsafe { core::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<u8>(), b.len() * 128) }
}

/// A region over the lines.
pub(crate) fn region(b: &mut [Line]) -> Region<'_> {
    Region::from_mut_slice(bytes(b))
}

/// A leaked zeroed buffer of at least `len` bytes, for loom threads and
/// tests that need `'static`.
#[allow(dead_code)]
pub(crate) fn leak(len: usize) -> &'static mut [u8] {
    bytes(Box::leak(buf(len).into_boxed_slice()))
}
