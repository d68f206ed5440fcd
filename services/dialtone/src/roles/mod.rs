//! The roles `dialtone serve` runs, and how they are wired together.

pub mod allowance;
pub mod call;
pub mod codecs;
pub mod commands;
pub mod conference;
pub mod controller;
pub mod dial;
pub mod edge;
pub mod legs;
pub mod liveness;
pub mod media_commands;
pub mod node;
pub mod outbound;
pub mod pacing;
pub mod registry;
pub mod room;
pub mod room_link;
pub mod side_program;
pub mod signal;
