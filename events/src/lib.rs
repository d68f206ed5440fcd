//! Dialtone's event model and event logs.
//!
//! - [`envelope`]: the CloudEvents 1.0 envelope and the per-stream hash chain.
//! - [`payload`]: one typed payload per event type, and the catalogue of types.
//! - [`sid`]: Twilio-style SIDs (`AC…`, `CA…`, …).
//! - [`log`]: the [`EventLog`] interface; [`sqlite`] and [`kafka`] implement it.
//! - [`position`]: resumable positions as opaque tokens (the stream API's event ids).
//! - [`audit`]: integrity verification.
//! - [`conformance`]: the behaviour every backend must show, run by both backends' tests.

pub mod audit;
pub mod conformance;
pub mod describe;
pub mod envelope;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod log;
pub mod payload;
pub mod position;
pub mod sid;
pub mod sqlite;

pub use envelope::Event;
pub use log::{
    Appended, Cursor, EventLog, ExpectedVersion, Filter, LogError, NewEvent, Position,
    RecordedEvent, Subscription,
};
pub use payload::Payload;
