//! TODO(being written): condvar
