//! Dialtone's event streams: the log made available to the developers who build on it.
//!
//! - [`hub`]: [`EventHub`], one subscription to the log fanned out to many subscribers, each
//!   with its own filter and cursor, catch-up from any position then live.
//! - [`filter`]: which of an account's events a subscriber receives (`Types`, `Subject`).
//! - [`public`]: the JSON subscribers receive (the stored CloudEvent, minus secrets).
//! - [`sinks`]: [`sinks::SinkDeliverer`], webhook sinks fed in log order, retried, recorded
//!   on the log and resumed exactly after a restart.
//!
//! The HTTP surface (Server-Sent Events, WebSocket, sinks REST) is in `dialtone-api`; this
//! crate knows no HTTP server.

pub mod filter;
pub mod hub;
pub mod public;
pub mod sinks;

pub use filter::{FilterError, StreamFilter, TypePattern};
pub use hub::{
    Delivery, EventHub, HubConfig, HubStatus, LagPolicy, Start, SubscribeError, Subscriber,
};
