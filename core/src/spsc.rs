//! TODO(being written): spsc
