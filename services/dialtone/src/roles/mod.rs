//! The roles `dialtone serve` runs, and how they are wired together.

pub mod call;
pub mod edge;
pub mod registry;
