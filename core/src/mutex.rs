//! TODO(being written): mutex
