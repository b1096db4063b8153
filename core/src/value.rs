//! TODO(being written): value
