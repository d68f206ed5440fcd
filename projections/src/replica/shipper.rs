//! The shipper: writes the read models' committed row changes into PostgreSQL.
//!
//! Work is shared per projection: each projection has a PostgreSQL advisory lock, and only
//! the node holding it writes that projection's tables and checkpoint row. A node takes at
//! most its share (`ceil(projections / live projector nodes)`, from the `nodes` read model)
//! and gives back what is over its share, so two projector nodes split the projections and
//! one survivor takes them all. Locks are session locks: a node that dies or loses its
//! connection loses them at once, and can never write without them.
//!
//! Taking a projection over ("syncing" it): if PostgreSQL's checkpoint row for it equals
//! this node's local checkpoint (same version, same cursor), the tables already hold the
//! same rows (projections are deterministic) and nothing is copied; if PostgreSQL is ahead,
//! the node waits for its local projection to catch up; otherwise it copies the tables and
//! the checkpoint from a consistent local snapshot, in one PostgreSQL transaction. From then
//! on each committed batch's changes for the projection are applied in one transaction with
//! the new checkpoint row, so PostgreSQL's rows always match its checkpoint row.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use dialtone_events::Cursor;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

use super::capture::{read_batch_seq, ReplicaFeed, ReplicatedSet, CHECKPOINTS_TABLE};
use super::changes::{render_changes, upsert_rows, ChangeBatch, RenderError};
use super::schema::TableSchema;
use crate::nodes::list_nodes;
use crate::projection::{sql, ProjectionError};
use crate::runner::covers;

/// Errors of the shipper (it reconnects after any of them).
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Local(#[from] ProjectionError),
    #[error("rendering rows for PostgreSQL: {0}")]
    Render(#[from] RenderError),
    #[error("a blocking task failed: {0}")]
    Task(String),
}

/// Where and as whom to ship.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// `postgres://user@host:port/db` (libpq-style key=value strings work too).
    pub url: String,
    /// This node's id: orders which projections it prefers.
    pub node_id: String,
    /// The node's local read-model database (the source of copies).
    pub read_models: PathBuf,
    /// How often locks are rebalanced and waiting projections retried.
    pub tick: Duration,
    /// The role that counts a node as a projector in the `nodes` read model.
    pub role: String,
}

impl ReplicaConfig {
    pub fn new(url: impl Into<String>, node_id: impl Into<String>, read_models: &Path) -> Self {
        ReplicaConfig {
            url: url.into(),
            node_id: node_id.into(),
            read_models: read_models.to_path_buf(),
            tick: Duration::from_secs(1),
            role: "projector".to_owned(),
        }
    }
}

/// What the shipper is doing, for `/healthz` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Connected to PostgreSQL now.
    pub connected: bool,
    /// Projections whose lock this node holds.
    pub held: Vec<String>,
    /// Held projections whose PostgreSQL tables are current (the rest are waiting).
    pub synced: Vec<String>,
    /// Batches written to PostgreSQL since start.
    pub batches: u64,
    /// Projection copies made since start.
    pub copies: u64,
    pub last_error: Option<String>,
}

/// The running shipper. Dropping it (or [`ReplicaShipper::shutdown`]) stops it; its locks go
/// with its connection.
pub struct ReplicaShipper {
    status: watch::Receiver<ReplicaStatus>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ReplicaShipper {
    /// Starts shipping what `feed` receives to the database of `config`.
    pub fn start(config: ReplicaConfig, feed: ReplicaFeed) -> ReplicaShipper {
        let (status_tx, status) = watch::channel(ReplicaStatus::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(run(config, feed, status_tx, shutdown_rx));
        ReplicaShipper {
            status,
            shutdown,
            task: Some(task),
        }
    }

    pub fn status(&self) -> watch::Receiver<ReplicaStatus> {
        self.status.clone()
    }

    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ReplicaShipper {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Batches written in one PostgreSQL transaction at most.
const BATCHES_PER_WRITE: usize = 64;
/// Namespace of the advisory locks (the first key): "DT".
const LOCK_NAMESPACE: i32 = 0x4454;

async fn run(
    config: ReplicaConfig,
    mut feed: ReplicaFeed,
    status: watch::Sender<ReplicaStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let outcome = Session::connect(&config, &status).await;
        let outcome = match outcome {
            Ok(mut session) => {
                backoff = Duration::from_millis(250);
                session.run(&mut feed, &mut shutdown).await
            }
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => return,
            Err(error) => {
                let message = error.to_string();
                tracing::warn!(error = %message, "read-model replica: retrying");
                status.send_modify(|s| {
                    s.connected = false;
                    s.held.clear();
                    s.synced.clear();
                    s.last_error = Some(message);
                });
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A projection this node holds the lock of; `synced` is the local batch number its
/// PostgreSQL tables reflect, `None` while it waits to be synced.
type Held = BTreeMap<&'static str, Option<u64>>;

struct Session<'a> {
    config: &'a ReplicaConfig,
    status: &'a watch::Sender<ReplicaStatus>,
    client: Client,
    connection: JoinHandle<()>,
    schemas: Arc<HashMap<Arc<str>, TableSchema>>,
    held: Held,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn lock_key(projection: &str) -> i32 {
    // FNV-1a: stable across processes and releases.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in projection.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash as i32
}

/// Runs `f` on a fresh read-only connection to the local read models, on the blocking pool.
async fn local<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce(&Connection) -> Result<T, ProjectionError> + Send + 'static,
) -> Result<T, ReplicaError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let conn = open_local(&path)?;
        f(&conn)
    })
    .await
    .map_err(|e| ReplicaError::Task(e.to_string()))?
    .map_err(ReplicaError::from)
}

fn open_local(path: &Path) -> Result<Connection, ProjectionError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql("opening the local read models"))?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(sql("setting the busy timeout"))?;
    Ok(conn)
}

/// A checkpoint row: version and cursor.
type Checkpoint = (i64, String);

fn local_checkpoint(conn: &Connection, name: &str) -> Result<Option<Checkpoint>, ProjectionError> {
    conn.query_row(
        "SELECT version, cursor FROM projection_checkpoints WHERE projection = ?1",
        [name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(sql("reading a local checkpoint"))
}

/// What a sync found.
enum SyncStep {
    /// PostgreSQL already holds these rows: current as of local batch `seq`.
    Current { seq: u64 },
    /// PostgreSQL is ahead of this node's projection: try again later.
    Ahead,
    /// A statement of the copy.
    Copy(String),
    /// The copy is complete and reflects local batch `seq`.
    Copied { seq: u64 },
}

/// Rows read per copy statement.
const COPY_ROWS: usize = 500;

/// Reads a consistent local snapshot of `projection` and streams what PostgreSQL needs.
fn snapshot(
    path: &Path,
    projection: &'static str,
    tables: Vec<TableSchema>,
    checkpoints: TableSchema,
    remote: Option<Checkpoint>,
    remote_tables_match: bool,
    out: mpsc::Sender<SyncStep>,
) -> Result<(), ProjectionError> {
    let conn = open_local(path)?;
    // One read transaction: the batch number, the checkpoint and the rows are one snapshot.
    conn.execute_batch("BEGIN")
        .map_err(sql("starting a snapshot"))?;
    let seq = read_batch_seq(&conn)?;
    let mine = local_checkpoint(&conn, projection)?;
    let send = |step: SyncStep| out.blocking_send(step).is_ok();
    if let (Some(mine), Some(remote)) = (&mine, &remote) {
        if mine == remote && remote_tables_match {
            send(SyncStep::Current { seq });
            return Ok(());
        }
        if mine.0 == remote.0 {
            let parse = |c: &str| Cursor::from_json(c).ok();
            if let (Some(local), Some(theirs)) = (parse(&mine.1), parse(&remote.1)) {
                if covers(&theirs, &local) {
                    send(SyncStep::Ahead);
                    return Ok(());
                }
            }
        }
    }
    for table in &tables {
        if !send(SyncStep::Copy(table.postgres_recreate())) {
            return Ok(());
        }
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {} FROM {}",
                table.json_row_expr(""),
                table.quoted_name()
            ))
            .map_err(sql("reading rows to copy"))?;
        let mut rows = stmt.query([]).map_err(sql("reading rows to copy"))?;
        let mut chunk: Vec<Map<String, Value>> = Vec::with_capacity(COPY_ROWS);
        loop {
            let next = rows.next().map_err(sql("reading rows to copy"))?;
            if let Some(row) = next {
                let json: String = row.get(0).map_err(sql("reading rows to copy"))?;
                let parsed =
                    serde_json::from_str(&json).map_err(|e| ProjectionError::CorruptRow {
                        table: "replica copy",
                        message: e.to_string(),
                    })?;
                chunk.push(parsed);
            }
            if chunk.len() >= COPY_ROWS || (next.is_none() && !chunk.is_empty()) {
                let statement =
                    upsert_rows(table, &chunk).map_err(|e| ProjectionError::CorruptRow {
                        table: "replica copy",
                        message: e.to_string(),
                    })?;
                chunk.clear();
                if !send(SyncStep::Copy(statement)) {
                    return Ok(());
                }
            }
            if next.is_none() {
                break;
            }
        }
    }
    let checkpoint_row: Option<String> = conn
        .query_row(
            &format!(
                "SELECT {} FROM projection_checkpoints WHERE projection = ?1",
                checkpoints.json_row_expr("")
            ),
            [projection],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql("reading a local checkpoint"))?;
    let mut statement = format!(
        "DELETE FROM projection_checkpoints WHERE projection = '{}';\n",
        projection.replace('\'', "''")
    );
    if let Some(json) = checkpoint_row {
        let row: Map<String, Value> =
            serde_json::from_str(&json).map_err(|e| ProjectionError::CorruptRow {
                table: CHECKPOINTS_TABLE,
                message: e.to_string(),
            })?;
        statement.push_str(&upsert_rows(&checkpoints, [&row]).map_err(|e| {
            ProjectionError::CorruptRow {
                table: CHECKPOINTS_TABLE,
                message: e.to_string(),
            }
        })?);
    }
    if send(SyncStep::Copy(statement)) {
        send(SyncStep::Copied { seq });
    }
    Ok(())
}

impl<'a> Session<'a> {
    async fn connect(
        config: &'a ReplicaConfig,
        status: &'a watch::Sender<ReplicaStatus>,
    ) -> Result<Session<'a>, ReplicaError> {
        let (client, connection) = tokio_postgres::connect(&config.url, NoTls).await?;
        let connection = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "read-model replica: PostgreSQL connection ended");
            }
        });
        Ok(Session {
            config,
            status,
            client,
            connection,
            schemas: Arc::new(HashMap::new()),
            held: Held::new(),
        })
    }

    async fn run(
        &mut self,
        feed: &mut ReplicaFeed,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ReplicaError> {
        let set = feed.set.clone();
        let names: Vec<&'static str> = set
            .tables()
            .chain(std::iter::once(CHECKPOINTS_TABLE))
            .collect();
        self.schemas = Arc::new(
            local(&self.config.read_models, move |conn| {
                names
                    .into_iter()
                    .map(|t| Ok((Arc::from(t), TableSchema::read(conn, t)?)))
                    .collect::<Result<HashMap<_, _>, ProjectionError>>()
            })
            .await?,
        );
        let checkpoints = &self.schemas[CHECKPOINTS_TABLE];
        self.client
            .batch_execute(&checkpoints.postgres_create_if_missing())
            .await?;
        self.status.send_modify(|s| {
            s.connected = true;
            s.last_error = None;
        });
        tracing::info!("read-model replica: connected to PostgreSQL");
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if feed.overflow.swap(false, Ordering::AcqRel) {
                tracing::warn!("read-model replica fell behind the runner: copying instead");
                for synced in self.held.values_mut() {
                    *synced = None;
                }
            }
            tokio::select! {
                _ = shutdown.changed() => {
                    // The runner stops first: what it committed is in the channel.
                    let mut batches = Vec::new();
                    while let Ok(batch) = feed.receiver.try_recv() {
                        batches.push(batch);
                    }
                    for chunk in batches.chunks(BATCHES_PER_WRITE) {
                        self.ship(&set, chunk).await?;
                    }
                    return Ok(());
                }
                first = feed.receiver.recv() => {
                    let Some(first) = first else { return Ok(()) };
                    let mut batches = vec![first];
                    while batches.len() < BATCHES_PER_WRITE {
                        match feed.receiver.try_recv() {
                            Ok(batch) => batches.push(batch),
                            Err(_) => break,
                        }
                    }
                    self.ship(&set, &batches).await?;
                }
                _ = tick.tick() => {
                    self.rebalance(&set).await?;
                    self.sync_waiting(&set).await?;
                }
            }
        }
    }

    fn publish_held(&self) {
        let held: Vec<String> = self.held.keys().map(|p| (*p).to_owned()).collect();
        let synced: Vec<String> = self
            .held
            .iter()
            .filter(|(_, s)| s.is_some())
            .map(|(p, _)| (*p).to_owned())
            .collect();
        metrics::gauge!("dialtone_replica_projections_held").set(held.len() as f64);
        self.status.send_modify(|s| {
            s.held = held;
            s.synced = synced;
        });
    }

    /// Writes the changes of `batches` that belong to synced projections, in one transaction.
    async fn ship(
        &mut self,
        set: &ReplicatedSet,
        batches: &[ChangeBatch],
    ) -> Result<(), ReplicaError> {
        let held = &self.held;
        let changes = batches.iter().flat_map(|batch| {
            batch.changes.iter().filter(move |change| {
                set.owner(change)
                    .and_then(|p| held.get(p).copied().flatten())
                    .is_some_and(|synced| batch.seq > synced)
            })
        });
        let statements = render_changes(&self.schemas, changes)?;
        if statements.is_empty() {
            return Ok(());
        }
        self.client
            .batch_execute(&format!("BEGIN;\n{statements}COMMIT;"))
            .await?;
        metrics::counter!("dialtone_replica_batches_total").increment(batches.len() as u64);
        self.status
            .send_modify(|s| s.batches += batches.len() as u64);
        Ok(())
    }

    /// Takes free projection locks up to this node's share; gives back what is over it.
    async fn rebalance(&mut self, set: &ReplicatedSet) -> Result<(), ReplicaError> {
        let role = self.config.role.clone();
        let live = local(&self.config.read_models, move |conn| {
            let now = OffsetDateTime::now_utc();
            Ok(list_nodes(conn)?
                .iter()
                .filter(|n| n.serves(&role, now))
                .count())
        })
        .await
        .unwrap_or(1)
        .max(1);
        let names: Vec<&'static str> = set.names().collect();
        if names.is_empty() {
            return Ok(());
        }
        let share = names.len().div_ceil(live);
        // This node's preferred order: the list rotated by its id, so nodes start apart.
        let start = lock_key(&self.config.node_id).unsigned_abs() as usize % names.len();
        let preferred: Vec<&'static str> = names[start..]
            .iter()
            .chain(&names[..start])
            .copied()
            .collect();
        let mut changed = false;
        while self.held.len() > share {
            let Some(give) = preferred
                .iter()
                .rev()
                .find(|p| self.held.contains_key(*p))
                .copied()
            else {
                break;
            };
            self.client
                .query_one(
                    "SELECT pg_advisory_unlock($1, $2)",
                    &[&LOCK_NAMESPACE, &lock_key(give)],
                )
                .await?;
            self.held.remove(give);
            tracing::info!(
                projection = give,
                "read-model replica: gave a projection back"
            );
            changed = true;
        }
        for name in preferred {
            if self.held.len() >= share {
                break;
            }
            if self.held.contains_key(name) {
                continue;
            }
            let row = self
                .client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&LOCK_NAMESPACE, &lock_key(name)],
                )
                .await?;
            if row.get::<_, bool>(0) {
                tracing::info!(projection = name, "read-model replica: took a projection");
                self.held.insert(name, None);
                changed = true;
            }
        }
        if changed {
            self.publish_held();
        }
        Ok(())
    }

    /// Syncs every held projection that is not yet current.
    async fn sync_waiting(&mut self, set: &ReplicatedSet) -> Result<(), ReplicaError> {
        let waiting: Vec<&'static str> = self
            .held
            .iter()
            .filter(|(_, s)| s.is_none())
            .map(|(p, _)| *p)
            .collect();
        for projection in waiting {
            let tables = set
                .projections
                .iter()
                .find(|(p, _)| *p == projection)
                .map(|(_, t)| *t)
                .unwrap_or(&[]);
            if let Some(seq) = self.sync(projection, tables).await? {
                self.held.insert(projection, Some(seq));
                self.publish_held();
            }
        }
        Ok(())
    }

    /// Brings `projection`'s PostgreSQL tables to a local snapshot; the snapshot's batch
    /// number, or `None` if PostgreSQL is ahead of this node.
    async fn sync(
        &mut self,
        projection: &'static str,
        tables: &'static [&'static str],
    ) -> Result<Option<u64>, ReplicaError> {
        let remote: Option<Checkpoint> = self
            .client
            .query_opt(
                "SELECT version, cursor FROM projection_checkpoints WHERE projection = $1",
                &[&projection],
            )
            .await?
            .map(|r| (r.get(0), r.get(1)));
        let schemas: Vec<TableSchema> = tables
            .iter()
            .filter_map(|t| self.schemas.get(*t).cloned())
            .collect();
        let mut tables_match = true;
        for schema in &schemas {
            let columns: Vec<String> = self
                .client
                .query(
                    "SELECT column_name::text FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = $1
                     ORDER BY ordinal_position",
                    &[&schema.name],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let local: Vec<&String> = schema.columns.iter().map(|c| &c.name).collect();
            tables_match &= columns.iter().eq(local.iter().copied());
        }
        let (tx, mut rx) = mpsc::channel(4);
        let path = self.config.read_models.clone();
        let checkpoints = self.schemas[CHECKPOINTS_TABLE].clone();
        let reader = tokio::task::spawn_blocking(move || {
            snapshot(
                &path,
                projection,
                schemas,
                checkpoints,
                remote,
                tables_match,
                tx,
            )
        });
        let mut began = false;
        let mut outcome = None;
        while let Some(step) = rx.recv().await {
            match step {
                SyncStep::Current { seq } => outcome = Some(seq),
                SyncStep::Ahead => {}
                SyncStep::Copy(statements) => {
                    if !began {
                        self.client.batch_execute("BEGIN").await?;
                        began = true;
                    }
                    self.client.batch_execute(&statements).await?;
                }
                SyncStep::Copied { seq } => {
                    self.client.batch_execute("COMMIT").await?;
                    began = false;
                    metrics::counter!("dialtone_replica_copies_total").increment(1);
                    self.status.send_modify(|s| s.copies += 1);
                    tracing::info!(projection, "read-model replica: copied a projection");
                    outcome = Some(seq);
                }
            }
        }
        reader
            .await
            .map_err(|e| ReplicaError::Task(e.to_string()))??;
        if began {
            self.client.batch_execute("ROLLBACK").await?;
            return Ok(None);
        }
        Ok(outcome)
    }
}
