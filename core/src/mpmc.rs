//! TODO(being written): mpmc
