//! The runner's side of replication: temporary triggers on the runner's own connection
//! record every row its batch changes, in the batch's transaction, and the committed batch's
//! changes go to the shipper through a bounded channel.
//!
//! Triggers (not SQLite's session extension, which needs `bindgen` and `libclang` to build)
//! are `TEMP`: they exist only on the runner's connection, so nothing else writing the
//! database pays for them, and they vanish with it. The captured rows live in a `TEMP`
//! table inside the batch's transaction, so a rolled-back batch captures nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Transaction};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::changes::{ChangeBatch, ChangeKind, RowChange};
use super::schema::TableSchema;
use crate::projection::{sql, Projection, ProjectionError};

/// The checkpoint table; its rows belong to the projection they name.
pub const CHECKPOINTS_TABLE: &str = "projection_checkpoints";

/// Which replicated projection owns which tables.
#[derive(Debug, Clone, Default)]
pub struct ReplicatedSet {
    /// Projection name → its tables, in the runner's order.
    pub projections: Vec<(&'static str, &'static [&'static str])>,
}

impl ReplicatedSet {
    /// The projections among `projections` whose rows are shared.
    pub fn of(projections: &[Box<dyn Projection>]) -> ReplicatedSet {
        ReplicatedSet {
            projections: projections
                .iter()
                .filter(|p| p.replicated())
                .map(|p| (p.name(), p.tables()))
                .collect(),
        }
    }

    /// The projection a change belongs to.
    pub fn owner(&self, change: &RowChange) -> Option<&'static str> {
        if &*change.table == CHECKPOINTS_TABLE {
            let name = change.row.get("projection")?.as_str()?;
            return self
                .projections
                .iter()
                .find(|(p, _)| *p == name)
                .map(|(p, _)| *p);
        }
        self.projections
            .iter()
            .find(|(_, tables)| tables.contains(&&*change.table))
            .map(|(p, _)| *p)
    }

    pub fn tables(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.projections
            .iter()
            .flat_map(|(_, tables)| tables.iter().copied())
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.projections.iter().map(|(p, _)| *p)
    }
}

/// Handed to the runner ([`crate::RunnerConfig::replica`]): where captured batches go.
#[derive(Clone)]
pub struct ReplicaCapture {
    pub(crate) set: Arc<ReplicatedSet>,
    sender: mpsc::Sender<ChangeBatch>,
    /// Set when a batch could not be queued: the shipper must copy instead.
    overflow: Arc<AtomicBool>,
}

impl std::fmt::Debug for ReplicaCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaCapture")
            .field("projections", &self.set.projections)
            .finish_non_exhaustive()
    }
}

/// The shipper's end of the channel.
pub struct ReplicaFeed {
    pub(crate) set: Arc<ReplicatedSet>,
    pub(crate) receiver: mpsc::Receiver<ChangeBatch>,
    pub(crate) overflow: Arc<AtomicBool>,
}

/// A capture for the runner and the feed for the shipper, for `projections`; at most
/// `buffer` committed batches wait for the shipper (beyond that it copies tables instead).
pub fn replica_channel(
    projections: &[Box<dyn Projection>],
    buffer: usize,
) -> (ReplicaCapture, ReplicaFeed) {
    let set = Arc::new(ReplicatedSet::of(projections));
    let (sender, receiver) = mpsc::channel(buffer.max(1));
    let overflow = Arc::new(AtomicBool::new(false));
    (
        ReplicaCapture {
            set: set.clone(),
            sender,
            overflow: overflow.clone(),
        },
        ReplicaFeed {
            set,
            receiver,
            overflow,
        },
    )
}

const STATE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS replica_state (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    batch_seq INTEGER NOT NULL
);
CREATE TEMP TABLE IF NOT EXISTS replica_changes (
    id  INTEGER PRIMARY KEY,
    tbl TEXT NOT NULL,
    op  TEXT NOT NULL,
    row TEXT NOT NULL
);
";

/// The number of the last captured batch committed in this database.
pub(crate) fn read_batch_seq(conn: &Connection) -> Result<u64, ProjectionError> {
    let exists: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = 'replica_state'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql("reading the replica batch number"))?;
    if exists.is_none() {
        return Ok(0);
    }
    conn.query_row(
        "SELECT batch_seq FROM replica_state WHERE id = 1",
        [],
        |r| r.get::<_, u64>(0),
    )
    .optional()
    .map(|seq| seq.unwrap_or(0))
    .map_err(sql("reading the replica batch number"))
}

/// The runner's capture, installed on its write connection.
pub(crate) struct CaptureState {
    capture: ReplicaCapture,
    tables: HashMap<String, Arc<str>>,
    seq: u64,
}

impl CaptureState {
    /// Creates the triggers on `conn` for every replicated table and the checkpoints. Call
    /// after the projections created (or rebuilt) their tables.
    pub(crate) fn install(
        conn: &Connection,
        capture: ReplicaCapture,
    ) -> Result<CaptureState, ProjectionError> {
        conn.execute_batch(STATE_SCHEMA)
            .map_err(sql("creating the replica capture tables"))?;
        let mut tables = HashMap::new();
        let names: Vec<&str> = capture
            .set
            .tables()
            .chain(std::iter::once(CHECKPOINTS_TABLE))
            .collect();
        for table in names {
            let schema = TableSchema::read(conn, table)?;
            let row = schema.json_row_expr("NEW.");
            let key = schema.json_key_expr("OLD.");
            let quoted = schema.quoted_name();
            let key_changed = schema
                .primary_key
                .iter()
                .map(|c| format!("OLD.\"{c}\" IS NOT NEW.\"{c}\""))
                .collect::<Vec<_>>()
                .join(" OR ");
            conn.execute_batch(&format!(
                "DROP TRIGGER IF EXISTS temp.replica_{table}_insert;
                 DROP TRIGGER IF EXISTS temp.replica_{table}_update;
                 DROP TRIGGER IF EXISTS temp.replica_{table}_rekey;
                 DROP TRIGGER IF EXISTS temp.replica_{table}_delete;
                 CREATE TEMP TRIGGER replica_{table}_insert AFTER INSERT ON main.{quoted} BEGIN
                   INSERT INTO replica_changes (tbl, op, row) VALUES ('{table}', 'U', {row});
                 END;
                 CREATE TEMP TRIGGER replica_{table}_rekey AFTER UPDATE ON main.{quoted}
                 WHEN {key_changed} BEGIN
                   INSERT INTO replica_changes (tbl, op, row) VALUES ('{table}', 'D', {key});
                 END;
                 CREATE TEMP TRIGGER replica_{table}_update AFTER UPDATE ON main.{quoted} BEGIN
                   INSERT INTO replica_changes (tbl, op, row) VALUES ('{table}', 'U', {row});
                 END;
                 CREATE TEMP TRIGGER replica_{table}_delete AFTER DELETE ON main.{quoted} BEGIN
                   INSERT INTO replica_changes (tbl, op, row) VALUES ('{table}', 'D', {key});
                 END;"
            ))
            .map_err(sql("creating the replica capture triggers"))?;
            tables.insert(table.to_owned(), Arc::from(table));
        }
        let seq = read_batch_seq(conn)?;
        Ok(CaptureState {
            capture,
            tables,
            seq,
        })
    }

    /// Inside the batch's transaction, before commit: takes the captured rows and numbers
    /// the batch (the number is stored in the same transaction).
    pub(crate) fn drain(
        &mut self,
        tx: &Transaction<'_>,
    ) -> Result<Option<ChangeBatch>, ProjectionError> {
        let mut changes = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached("SELECT tbl, op, row FROM temp.replica_changes ORDER BY id")
                .map_err(sql("reading captured changes"))?;
            let mut rows = stmt.query([]).map_err(sql("reading captured changes"))?;
            while let Some(r) = rows.next().map_err(sql("reading captured changes"))? {
                let table: String = r.get(0).map_err(sql("reading captured changes"))?;
                let op: String = r.get(1).map_err(sql("reading captured changes"))?;
                let json: String = r.get(2).map_err(sql("reading captured changes"))?;
                let row: Map<String, Value> =
                    serde_json::from_str(&json).map_err(|e| ProjectionError::CorruptRow {
                        table: "replica_changes",
                        message: e.to_string(),
                    })?;
                let table = self
                    .tables
                    .get(&table)
                    .cloned()
                    .unwrap_or_else(|| Arc::from(table.as_str()));
                let kind = if op == "D" {
                    ChangeKind::Delete
                } else {
                    ChangeKind::Upsert
                };
                changes.push(RowChange { table, kind, row });
            }
        }
        if changes.is_empty() {
            return Ok(None);
        }
        tx.prepare_cached("DELETE FROM temp.replica_changes")
            .and_then(|mut s| s.execute([]))
            .map_err(sql("clearing captured changes"))?;
        let seq = self.seq + 1;
        tx.prepare_cached(
            "INSERT INTO replica_state (id, batch_seq) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET batch_seq = excluded.batch_seq",
        )
        .and_then(|mut s| s.execute([seq]))
        .map_err(sql("numbering a captured batch"))?;
        Ok(Some(ChangeBatch { seq, changes }))
    }

    /// After the commit: hands the batch to the shipper, or flags an overflow if it lags.
    pub(crate) fn publish(&mut self, batch: ChangeBatch) {
        self.seq = batch.seq;
        if self.capture.sender.try_send(batch).is_err() {
            self.capture.overflow.store(true, Ordering::Release);
            metrics::counter!("dialtone_replica_overflows_total").increment(1);
        }
    }
}
