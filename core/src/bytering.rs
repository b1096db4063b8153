//! TODO(being written): bytering
