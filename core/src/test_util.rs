//! Memory for unit tests: 128-byte-aligned heap buffers to build regions in.
extern crate std;

use std::vec;
use std::vec::Vec;

/// One 128-byte line: a `Vec<Line>` is a zeroed, 128-aligned buffer.
#[repr(C, align(128))]
#[derive(Clone, Copy)]
pub(crate) struct Line(pub(crate) [u8; 128]);

/// `lines` zeroed lines.
pub(crate) fn buf(lines: usize) -> Vec<Line> {
    vec![Line([0; 128]); lines]
}

/// The lines as bytes, for `Region::from_mut_slice`.
pub(crate) fn bytes(b: &mut [Line]) -> &mut [u8] {
    // SAFETY: Line is 128 plain bytes with no padding, so `b` is
    // `b.len() * 128` initialised bytes, borrowed mutably here.
    unsafe { core::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<u8>(), b.len() * 128) }
}

/// A leaked zeroed buffer of at least `len` bytes, for loom threads and
/// tests that need `'static` (the same helper as on main, where `buf`
/// takes bytes).
#[allow(dead_code)]
pub(crate) fn leak(len: usize) -> &'static mut [u8] {
    bytes(buf(len.div_ceil(128).max(1)).leak())
}
