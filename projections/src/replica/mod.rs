//! Read models shared in PostgreSQL.
//!
//! Every projector node keeps projecting the whole log into its own SQLite read models (the
//! embedded default, and what its API answers from, read-your-writes included). With
//! `--read-models postgres://…` the node also replicates those rows into one PostgreSQL
//! database that billing teams and other nodes query:
//!
//! - [`capture`]: temporary triggers on the runner's connection record every row a batch
//!   changes, inside the batch's transaction; the committed batch goes to the shipper.
//! - [`changes`]: a batch's row changes rendered as PostgreSQL statements.
//! - [`schema`]: a read-model table's columns and keys, read from SQLite, and the matching
//!   PostgreSQL DDL.
//! - [`shipper`]: writes batches to PostgreSQL, each projection's rows with its checkpoint
//!   row in one transaction, and shares the projections between projector nodes through
//!   advisory locks.
//!
//! Invariant: in PostgreSQL, a projection's rows are always exactly the rows its checkpoint
//! row (`projection_checkpoints`) says, because both change in one transaction; a crash of
//! either side replays or re-copies, and never counts an event twice.

pub mod capture;
pub mod changes;
pub mod schema;
pub mod shipper;

pub use capture::{replica_channel, ReplicaCapture, ReplicaFeed, CHECKPOINTS_TABLE};
pub use shipper::{ReplicaConfig, ReplicaError, ReplicaShipper, ReplicaStatus};
