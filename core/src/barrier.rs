//! TODO(being written): barrier
