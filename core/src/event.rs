//! TODO(being written): event
