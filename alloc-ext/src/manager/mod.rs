//! Manager (WIP).
pub mod pickle;
