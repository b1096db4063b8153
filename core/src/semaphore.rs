//! TODO(being written): semaphore
