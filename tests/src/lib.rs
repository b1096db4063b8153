//! Helpers for multi-process tests: anonymous shared mappings, fork with a
//! watchdog, and child exit status.
