//! The projection interface.

use dialtone_events::envelope::{format_time, parse_time};
use dialtone_events::{LogError, Payload, RecordedEvent};
use rusqlite::{Connection, Transaction};
use time::OffsetDateTime;

/// Errors of projections, the runner and read-model queries.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("read-model storage error in {context}: {source}")]
    Sqlite {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("event log error: {0}")]
    Log(#[from] LogError),
    #[error("checkpoint of projection {projection} is unreadable: {message}")]
    Checkpoint { projection: String, message: String },
    #[error("stored row in {table} is unreadable: {message}")]
    CorruptRow {
        table: &'static str,
        message: String,
    },
    #[error("I/O error in {context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("two projections are named {0:?}")]
    DuplicateName(String),
    #[error("the projection runner has stopped{}", .0.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    Stopped(Option<String>),
    #[error("a blocking task failed: {0}")]
    Task(String),
}

/// Maps a rusqlite error to [`ProjectionError::Sqlite`] with context.
pub(crate) fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> ProjectionError {
    move |source| ProjectionError::Sqlite { context, source }
}

/// A read model fed by the log.
///
/// `apply` must be deterministic: rows may depend only on the events (their payloads,
/// envelope times, sequences) and on configuration, never on the wall clock or on
/// randomness, so that a rebuild from the log produces identical rows.
///
/// In-memory views (directories) must change only in [`Projection::after_commit`]: `apply`
/// stages changes, the runner commits the transaction holding the rows and the checkpoint,
/// then calls `after_commit` (or `after_rollback` if the transaction failed).
pub trait Projection: Send + 'static {
    /// Stable name; the key of the checkpoint row.
    fn name(&self) -> &'static str;

    /// Bump when the tables or the meaning of `apply` change: the runner then drops
    /// [`Projection::tables`] and rebuilds the projection from the start of the log.
    fn version(&self) -> u32;

    /// The tables this projection owns (dropped on a version change or a rebuild).
    fn tables(&self) -> &'static [&'static str];

    /// Whether the rows are shared read models, copied to PostgreSQL when the node replicates
    /// them ([`crate::replica`]); node-local operational state says no.
    fn replicated(&self) -> bool {
        true
    }

    /// Creates the tables and indexes if missing.
    fn init(&self, tx: &Transaction<'_>) -> Result<(), ProjectionError>;

    /// Whether events of this type can change the projection; others are skipped without
    /// decoding (the checkpoint still moves past them).
    fn wants(&self, event_type: &str) -> bool {
        let _ = event_type;
        true
    }

    /// Applies one event inside the runner's transaction.
    fn apply(&mut self, event: &RecordedEvent, tx: &Transaction<'_>)
        -> Result<(), ProjectionError>;

    /// Called once per batch inside its transaction, after the last `apply` and before the
    /// checkpoint is written: write rows the projection staged in memory during the batch
    /// (a call's four events then cost one row write, not four).
    fn before_commit(&mut self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        let _ = tx;
        Ok(())
    }

    /// Fills in-memory views from committed rows (at start, after a rebuild).
    fn load(&mut self, conn: &Connection) -> Result<(), ProjectionError> {
        let _ = conn;
        Ok(())
    }

    /// Called after the transaction holding the staged changes committed.
    fn after_commit(&mut self) {}

    /// Called after the transaction failed and rolled back: drop staged rows, changes and
    /// caches.
    fn after_rollback(&mut self) {}
}

/// Decodes an event's payload; a payload this binary cannot decode is logged and skipped,
/// so one malformed event never stalls every read model behind it.
pub(crate) fn decode(recorded: &RecordedEvent) -> Option<Payload> {
    match recorded.event.payload() {
        Ok(payload) => Some(payload),
        Err(error) => {
            tracing::warn!(
                position = %recorded.position,
                stream = %recorded.event.subject,
                %error,
                "skipping an event whose payload cannot be decoded"
            );
            None
        }
    }
}

/// How times are stored in read models: RFC 3339 UTC with microseconds (fixed width, so
/// text order is time order and `sqlite3` users can read it).
pub fn store_time(t: OffsetDateTime) -> String {
    format_time(t)
}

/// Reads a time stored by [`store_time`].
pub(crate) fn load_time(
    table: &'static str,
    value: &str,
) -> Result<OffsetDateTime, ProjectionError> {
    parse_time(value).map_err(|e| ProjectionError::CorruptRow {
        table,
        message: format!("bad time {value:?}: {e}"),
    })
}

pub(crate) fn load_time_opt(
    table: &'static str,
    value: Option<String>,
) -> Result<Option<OffsetDateTime>, ProjectionError> {
    value.map(|v| load_time(table, &v)).transpose()
}
