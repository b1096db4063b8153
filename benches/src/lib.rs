//! Benchmark support for multiproc.
