//! Dialtone's read models: everything anyone queries is a projection of the event log.
//!
//! - [`projection`]: the [`Projection`] trait and [`ProjectionError`].
//! - [`runner`]: [`ProjectionRunner`] applies events in batches and writes each projection's
//!   checkpoint in the same SQLite transaction as its rows; [`rebuild`] replays one
//!   projection from the start of the log.
//! - [`db`]: the read-model database (`<data-dir>/readmodels.db`) and [`ReadModels`], a small
//!   pool of read-only connections for queries.
//! - read models: [`accounts`] (and the auth-token scheme), [`numbers`], [`calls`],
//!   [`billing`] (rating, usage), [`recordings`], [`callbacks`] (the status-callback
//!   outbox), [`conferences`] (rooms and their live participants), [`sinks`] (event sinks,
//!   subscriptions and delivery progress), [`nodes`] (liveness: last heartbeats).
//! - [`paging`]: keyset paging shared by the list queries.
//! - [`replica`]: the read models shared in PostgreSQL (`--read-models postgres://…`):
//!   triggers capture each committed batch's rows, a shipper writes them to PostgreSQL
//!   under per-projection advisory locks.
//! - [`replay`]: read models as they stood at a point of the log (as-of queries, re-rating,
//!   reconciliation), replayed into a private in-memory database.
//!
//! The usual set of projections, as `dialtone serve` runs it:
//!
//! ```no_run
//! # async fn example(log: std::sync::Arc<dyn dialtone_events::EventLog>) -> Result<(), dialtone_projections::ProjectionError> {
//! use dialtone_projections::*;
//! let accounts = AccountDirectory::default();
//! let numbers = NumberDirectory::default();
//! let db_path = std::path::Path::new("/var/lib/dialtone/readmodels.db");
//! let runner = ProjectionRunner::start(
//!     log.clone(),
//!     db_path,
//!     standard_projections(&accounts, &numbers, billing::RateTable::default()),
//!     RunnerConfig::default(),
//! )
//! .await?;
//! runner.catch_up(log.as_ref()).await?; // optional: serve only once the read models are current
//! let read_models = ReadModels::new(db_path);
//! let handle = runner.handle(); // clone into the API for read-your-writes
//! # Ok(()) }
//! ```

pub mod accounts;
pub mod billing;
pub mod callbacks;
pub mod calls;
pub mod conferences;
pub mod db;
pub mod inventory;
pub mod nodes;
pub mod numbers;
pub mod paging;
pub mod projection;
pub mod recordings;
pub mod replay;
pub mod replica;
pub mod runner;
pub mod sinks;

pub use accounts::{
    create_account, derive_auth_token, rotate_auth_token, token_sha256, AccountDirectory,
    AccountEntry, AccountsProjection,
};
pub use billing::{BillingProjection, RateTable};
pub use callbacks::CallbacksProjection;
pub use calls::CallsProjection;
pub use conferences::ConferencesProjection;
pub use db::{open_read_model_db, ReadModels, READ_MODELS_FILE};
pub use nodes::NodesProjection;
pub use numbers::{NumberDirectory, NumberRoute, NumbersProjection};
pub use projection::{Projection, ProjectionError};
pub use recordings::RecordingsProjection;
pub use replica::{
    replica_channel, ReplicaCapture, ReplicaConfig, ReplicaError, ReplicaFeed, ReplicaShipper,
    ReplicaStatus,
};
pub use runner::{rebuild, Progress, ProjectionRunner, RebuildReport, RunnerConfig, RunnerHandle};
pub use sinks::SinksProjection;

/// The projections `dialtone serve` runs: accounts and numbers (which keep the given
/// in-memory directories live), calls, billing (rated with `rates` unless a published rate
/// table is in force), recordings, the status-callback outbox, conferences and sinks.
pub fn standard_projections(
    accounts: &AccountDirectory,
    numbers: &NumberDirectory,
    rates: RateTable,
) -> Vec<Box<dyn Projection>> {
    vec![
        Box::new(AccountsProjection::new(accounts.clone())),
        Box::new(NumbersProjection::new(numbers.clone())),
        Box::new(CallsProjection::new()),
        Box::new(BillingProjection::new(rates)),
        Box::new(RecordingsProjection::new()),
        Box::new(CallbacksProjection::new()),
        Box::new(ConferencesProjection::new()),
        Box::new(SinksProjection::new()),
        Box::new(NodesProjection::new()),
    ]
}
