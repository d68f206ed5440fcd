//! The projection runner: one task, one write connection, every projection.
//!
//! The runner subscribes to the log from the lowest checkpoint of its projections, drains
//! whatever events are available (up to [`RunnerConfig::max_batch`]) and applies them in one
//! SQLite transaction: each projection sees the events its checkpoint has not passed, and its
//! new checkpoint is written in that same transaction. A crash at any instant therefore
//! leaves rows and checkpoints consistent: the next start resumes exactly after the last
//! committed batch, neither losing nor double-counting an event. In-memory views are updated
//! only after the commit ([`Projection::after_commit`]).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dialtone_events::{Cursor, EventLog, Filter, Position, RecordedEvent};
use futures::FutureExt;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::open_read_model_db;
use crate::projection::{sql, Projection, ProjectionError};
use crate::replica::capture::{CaptureState, ReplicaCapture};
use crate::replica::changes::ChangeBatch;

/// Tuning of the runner.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Events applied per transaction at most.
    pub max_batch: usize,
    /// Wait before resubscribing after a storage or log error.
    pub retry_backoff: Duration,
    /// Where each committed batch's row changes go, when the read models are replicated to
    /// PostgreSQL ([`crate::replica`]).
    pub replica: Option<ReplicaCapture>,
}

impl Default for RunnerConfig {
    fn default() -> RunnerConfig {
        RunnerConfig {
            max_batch: 4096,
            retry_backoff: Duration::from_secs(1),
            replica: None,
        }
    }
}

/// What the runner has applied so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every projection has applied every event before this cursor.
    pub cursor: Cursor,
    /// Events applied since start.
    pub events: u64,
    pub batches: u64,
    /// The runner task has ended; waiting for more progress is pointless.
    pub stopped: bool,
    /// The last error met, if any (the runner retries storage and log errors).
    pub last_error: Option<String>,
}

/// Whether `progress` has passed every offset named in `target`.
pub(crate) fn covers(progress: &Cursor, target: &Cursor) -> bool {
    target
        .0
        .iter()
        .all(|(partition, next)| progress.next_offset(partition) >= *next)
}

/// The cursor that every one of `cursors` has passed.
fn min_cursor<'a>(cursors: impl IntoIterator<Item = &'a Cursor>) -> Cursor {
    let cursors: Vec<&Cursor> = cursors.into_iter().collect();
    let partitions: HashSet<&String> = cursors.iter().flat_map(|c| c.0.keys()).collect();
    let mut min = BTreeMap::new();
    for partition in partitions {
        let lowest = cursors
            .iter()
            .map(|c| c.next_offset(partition))
            .min()
            .unwrap_or(0);
        if lowest > 0 {
            min.insert(partition.clone(), lowest);
        }
    }
    Cursor(min)
}

/// A cheap, cloneable view of the runner's progress, for read-your-writes.
#[derive(Clone)]
pub struct RunnerHandle {
    progress: watch::Receiver<Progress>,
}

impl RunnerHandle {
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Resolves once every projection has applied the events at `positions` (e.g. the
    /// positions an append returned). Fails if the runner stops first.
    pub async fn wait_for(&self, positions: &[Position]) -> Result<(), ProjectionError> {
        self.wait(|p| positions.iter().all(|pos| p.cursor.has_passed(pos)))
            .await
    }

    /// Resolves once every projection has passed `cursor`.
    pub async fn wait_until(&self, cursor: &Cursor) -> Result<(), ProjectionError> {
        self.wait(|p| covers(&p.cursor, cursor)).await
    }

    /// Resolves once every event in the log now has been applied.
    pub async fn catch_up(&self, log: &dyn EventLog) -> Result<(), ProjectionError> {
        let mut rx = self.progress.clone();
        loop {
            let progress = rx.borrow_and_update().clone();
            // Reading from our own cursor (rather than comparing with `head()`) works for
            // every backend, including an empty log.
            if log.read_all(&progress.cursor, 1).await?.is_empty() {
                return Ok(());
            }
            if progress.stopped {
                return Err(ProjectionError::Stopped(progress.last_error));
            }
            if rx.changed().await.is_err() {
                return Err(ProjectionError::Stopped(None));
            }
        }
    }

    async fn wait(&self, done: impl Fn(&Progress) -> bool) -> Result<(), ProjectionError> {
        let mut rx = self.progress.clone();
        loop {
            {
                let progress = rx.borrow_and_update();
                if done(&progress) {
                    return Ok(());
                }
                if progress.stopped {
                    return Err(ProjectionError::Stopped(progress.last_error.clone()));
                }
            }
            if rx.changed().await.is_err() {
                return Err(ProjectionError::Stopped(None));
            }
        }
    }
}

/// One projection and its checkpoint.
struct Slot {
    projection: Box<dyn Projection>,
    cursor: Cursor,
    events_seen: u64,
}

/// A projection's checkpoint as a batch leaves it: cursor, events seen in total, events
/// seen in the batch.
type StagedCheckpoint = (Cursor, u64, u64);

/// Everything the blocking side of the runner owns.
struct RunnerState {
    conn: Connection,
    slots: Vec<Slot>,
    /// Records each batch's row changes for the PostgreSQL replica, if there is one.
    capture: Option<CaptureState>,
}

pub(crate) fn read_checkpoint(
    conn: &Connection,
    name: &str,
) -> Result<Option<(u32, Cursor, u64)>, ProjectionError> {
    let row: Option<(u32, String, u64)> = conn
        .query_row(
            "SELECT version, cursor, events_seen FROM projection_checkpoints WHERE projection = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(sql("reading a checkpoint"))?;
    row.map(|(version, cursor, seen)| {
        Cursor::from_json(&cursor)
            .map(|c| (version, c, seen))
            .map_err(|e| ProjectionError::Checkpoint {
                projection: name.to_owned(),
                message: format!("cursor {cursor:?}: {e}"),
            })
    })
    .transpose()
}

fn write_checkpoint(
    tx: &Transaction<'_>,
    projection: &dyn Projection,
    cursor: &Cursor,
    events_seen: u64,
) -> Result<(), ProjectionError> {
    tx.prepare_cached(
        "INSERT INTO projection_checkpoints (projection, version, cursor, events_seen)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (projection) DO UPDATE
         SET version = excluded.version, cursor = excluded.cursor, events_seen = excluded.events_seen",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            projection.name(),
            projection.version(),
            cursor.to_json(),
            events_seen
        ])
    })
    .map_err(sql("writing a checkpoint"))?;
    Ok(())
}

/// Drops the projection's tables and checkpoint and recreates its empty tables.
fn reset(tx: &Transaction<'_>, projection: &dyn Projection) -> Result<(), ProjectionError> {
    for table in projection.tables() {
        tx.execute_batch(&format!("DROP TABLE IF EXISTS \"{table}\""))
            .map_err(sql("dropping a projection table"))?;
    }
    tx.execute(
        "DELETE FROM projection_checkpoints WHERE projection = ?1",
        [projection.name()],
    )
    .map_err(sql("deleting a checkpoint"))?;
    projection.init(tx)?;
    write_checkpoint(tx, projection, &Cursor::start(), 0)
}

/// Checks the stored version, rebuilding (reset) on a change, creates tables and loads the
/// in-memory views. Returns the checkpoint to resume from.
fn prepare(
    conn: &mut Connection,
    projection: &mut dyn Projection,
) -> Result<(Cursor, u64), ProjectionError> {
    let stored = read_checkpoint(conn, projection.name())?;
    let tx = conn.transaction().map_err(sql("preparing a projection"))?;
    let resume = match stored {
        Some((version, cursor, seen)) if version == projection.version() => {
            projection.init(&tx)?;
            (cursor, seen)
        }
        Some((version, _, _)) => {
            tracing::info!(
                projection = projection.name(),
                from = version,
                to = projection.version(),
                "projection version changed: rebuilding it from the start of the log"
            );
            reset(&tx, projection)?;
            (Cursor::start(), 0)
        }
        None => {
            reset(&tx, projection)?;
            (Cursor::start(), 0)
        }
    };
    tx.commit().map_err(sql("preparing a projection"))?;
    projection.load(conn)?;
    Ok(resume)
}

impl RunnerState {
    fn open(
        db_path: &Path,
        projections: Vec<Box<dyn Projection>>,
        replica: Option<ReplicaCapture>,
    ) -> Result<RunnerState, ProjectionError> {
        let mut conn = open_read_model_db(db_path)?;
        let mut names = HashSet::new();
        let mut slots = Vec::with_capacity(projections.len());
        for mut projection in projections {
            if !names.insert(projection.name()) {
                return Err(ProjectionError::DuplicateName(projection.name().to_owned()));
            }
            let (cursor, events_seen) = prepare(&mut conn, projection.as_mut())?;
            tracing::info!(
                projection = projection.name(),
                version = projection.version(),
                cursor = %cursor.to_json(),
                "projection ready"
            );
            slots.push(Slot {
                projection,
                cursor,
                events_seen,
            });
        }
        // After `prepare`: the triggers need the tables, and a rebuild's drops and
        // re-creations are not changes to ship (the shipper copies a rebuilt projection).
        let capture = replica
            .map(|capture| CaptureState::install(&conn, capture))
            .transpose()?;
        Ok(RunnerState {
            conn,
            slots,
            capture,
        })
    }

    fn min_cursor(&self) -> Cursor {
        min_cursor(self.slots.iter().map(|s| &s.cursor))
    }

    /// Applies `batch` to every projection that has not passed each event, with the new
    /// checkpoints, in one transaction.
    fn apply_batch(&mut self, batch: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let RunnerState {
            conn,
            slots,
            capture,
        } = self;
        let staged =
            (|| -> Result<(Vec<StagedCheckpoint>, Option<ChangeBatch>), ProjectionError> {
                let tx = conn.transaction().map_err(sql("beginning a batch"))?;
                let mut staged = Vec::with_capacity(slots.len());
                for slot in slots.iter_mut() {
                    let mut cursor = slot.cursor.clone();
                    let mut seen = 0u64;
                    for recorded in batch {
                        if cursor.has_passed(&recorded.position) {
                            continue;
                        }
                        if slot.projection.wants(&recorded.event.event_type) {
                            slot.projection.apply(recorded, &tx)?;
                        }
                        cursor.advance(&recorded.position);
                        seen += 1;
                    }
                    slot.projection.before_commit(&tx)?;
                    if seen > 0 {
                        write_checkpoint(
                            &tx,
                            slot.projection.as_ref(),
                            &cursor,
                            slot.events_seen + seen,
                        )?;
                    }
                    staged.push((cursor, slot.events_seen + seen, seen));
                }
                let changes = match capture.as_mut() {
                    Some(capture) => capture.drain(&tx)?,
                    None => None,
                };
                tx.commit().map_err(sql("committing a batch"))?;
                Ok((staged, changes))
            })();
        match staged {
            Ok((staged, changes)) => {
                if let (Some(capture), Some(changes)) = (capture.as_mut(), changes) {
                    capture.publish(changes);
                }
                for (slot, (cursor, events_seen, seen)) in slots.iter_mut().zip(staged) {
                    slot.cursor = cursor;
                    slot.events_seen = events_seen;
                    slot.projection.after_commit();
                    if seen > 0 {
                        metrics::counter!(
                            "dialtone_projection_events_total",
                            "projection" => slot.projection.name()
                        )
                        .increment(seen);
                    }
                }
                Ok(())
            }
            Err(error) => {
                for slot in slots.iter_mut() {
                    slot.projection.after_rollback();
                }
                Err(error)
            }
        }
    }
}

/// Runs projections against a log, keeping their checkpoints in the read-model database.
/// Dropping it (or [`ProjectionRunner::shutdown`]) stops the task after its current batch.
pub struct ProjectionRunner {
    handle: RunnerHandle,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ProjectionRunner {
    /// Opens the read-model database at `db_path` (normally `<data-dir>/readmodels.db`),
    /// prepares every projection (rebuilding those whose version changed, loading in-memory
    /// directories from committed rows) and starts applying the log from their checkpoints.
    /// Returns once the directories are loaded; use [`ProjectionRunner::catch_up`] to wait
    /// for the read models to reach the current end of the log.
    pub async fn start(
        log: Arc<dyn EventLog>,
        db_path: &Path,
        projections: Vec<Box<dyn Projection>>,
        config: RunnerConfig,
    ) -> Result<ProjectionRunner, ProjectionError> {
        let path: PathBuf = db_path.to_path_buf();
        let replica = config.replica.clone();
        let state =
            tokio::task::spawn_blocking(move || RunnerState::open(&path, projections, replica))
                .await
                .map_err(|e| ProjectionError::Task(e.to_string()))??;
        let (progress_tx, progress_rx) = watch::channel(Progress {
            cursor: state.min_cursor(),
            ..Progress::default()
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(run(Box::new(state), log, progress_tx, shutdown_rx, config));
        Ok(ProjectionRunner {
            handle: RunnerHandle {
                progress: progress_rx,
            },
            shutdown,
            task: Some(task),
        })
    }

    pub fn handle(&self) -> RunnerHandle {
        self.handle.clone()
    }

    /// Resolves once every event now in the log has been applied.
    pub async fn catch_up(&self, log: &dyn EventLog) -> Result<(), ProjectionError> {
        self.handle.catch_up(log).await
    }

    /// Stops after the current batch and waits for the task to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ProjectionRunner {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Sets `stopped` when the runner task ends, however it ends, so waiters never hang.
struct StopGuard<'a>(&'a watch::Sender<Progress>);

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|p| p.stopped = true);
    }
}

async fn run(
    mut state: Box<RunnerState>,
    log: Arc<dyn EventLog>,
    progress: watch::Sender<Progress>,
    mut shutdown: watch::Receiver<bool>,
    config: RunnerConfig,
) {
    let _guard = StopGuard(&progress);
    let max_batch = config.max_batch.max(1);
    let record_error = |message: String| {
        tracing::error!(error = %message, "projection runner error; retrying");
        progress.send_modify(|p| p.last_error = Some(message));
    };
    loop {
        let mut subscription = match log.subscribe(state.min_cursor(), Filter::all()).await {
            Ok(subscription) => subscription,
            Err(error) => {
                record_error(format!("subscribing to the log: {error}"));
                if backoff(&mut shutdown, config.retry_backoff).await {
                    return;
                }
                continue;
            }
        };
        // Apply batches until the subscription fails or the runner is stopped.
        let failure = loop {
            let first = tokio::select! {
                _ = shutdown.changed() => return,
                next = subscription.next() => next,
            };
            let mut batch = match first {
                None => {
                    tracing::info!("event log closed; projection runner stopping");
                    return;
                }
                Some(Err(error)) => break format!("reading the log: {error}"),
                Some(Ok(recorded)) => vec![recorded],
            };
            let mut read_error = None;
            while batch.len() < max_batch {
                // `unconstrained`: tokio's cooperative budget would otherwise make the
                // channel look empty after 128 receives, capping every batch at 128 events
                // (and a catch-up at a sixth of its speed).
                match tokio::task::unconstrained(subscription.next()).now_or_never() {
                    Some(Some(Ok(recorded))) => batch.push(recorded),
                    Some(Some(Err(error))) => {
                        read_error = Some(format!("reading the log: {error}"));
                        break;
                    }
                    Some(None) | None => break,
                }
            }
            let started = Instant::now();
            let joined = tokio::task::spawn_blocking(move || {
                let result = state.apply_batch(&batch);
                (state, batch, result)
            })
            .await;
            let (returned, batch, result) = match joined {
                Ok(parts) => parts,
                Err(error) => {
                    // A panic in a projection lost the runner's state: stop loudly.
                    let message = format!("a projection panicked: {error}");
                    tracing::error!(error = %message, "projection runner stopped");
                    progress.send_modify(|p| p.last_error = Some(message));
                    return;
                }
            };
            state = returned;
            metrics::histogram!("dialtone_projection_batch_seconds")
                .record(started.elapsed().as_secs_f64());
            if let Err(error) = result {
                break format!("applying a batch: {error}");
            }
            let cursor = state.min_cursor();
            let applied = batch.len() as u64;
            progress.send_modify(|p| {
                p.cursor = cursor;
                p.events += applied;
                p.batches += 1;
            });
            if let Some(error) = read_error {
                break error;
            }
        };
        record_error(failure);
        if backoff(&mut shutdown, config.retry_backoff).await {
            return;
        }
    }
}

/// Sleeps `delay`; true if the runner was told to stop meanwhile.
async fn backoff(shutdown: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = shutdown.changed() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

/// The outcome of [`rebuild`].
#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub projection: String,
    pub events: u64,
    pub elapsed: Duration,
    pub events_per_second: f64,
}

/// Events read per page (and applied per transaction) by [`rebuild`].
const REBUILD_PAGE: usize = 20_000;

/// Drops `projection`'s tables and replays the whole log into it, writing its checkpoint
/// with each page so that a runner started afterwards continues where the rebuild ended.
/// Reading the next page overlaps applying the current one. `progress` gets the number of
/// events replayed so far. Do not run it while a runner owns the same projection.
pub async fn rebuild(
    log: &dyn EventLog,
    db_path: &Path,
    projection: Box<dyn Projection>,
    mut progress: impl FnMut(u64),
) -> Result<RebuildReport, ProjectionError> {
    let started = Instant::now();
    let path = db_path.to_path_buf();
    let name = projection.name().to_owned();
    let (conn, projection) = tokio::task::spawn_blocking(move || {
        let mut conn = open_read_model_db(&path)?;
        let tx = conn.transaction().map_err(sql("resetting a projection"))?;
        reset(&tx, projection.as_ref())?;
        tx.commit().map_err(sql("resetting a projection"))?;
        Ok::<_, ProjectionError>((conn, projection))
    })
    .await
    .map_err(|e| ProjectionError::Task(e.to_string()))??;
    let mut state = Box::new(RunnerState {
        conn,
        slots: vec![Slot {
            projection,
            cursor: Cursor::start(),
            events_seen: 0,
        }],
        capture: None,
    });
    let mut read_cursor = Cursor::start();
    let mut page = log.read_all(&read_cursor, REBUILD_PAGE).await?;
    let mut events = 0u64;
    while !page.is_empty() {
        for recorded in &page {
            read_cursor.advance(&recorded.position);
        }
        let count = page.len() as u64;
        let apply = tokio::task::spawn_blocking(move || {
            let result = state.apply_batch(&page);
            (state, result)
        });
        let (next, applied) = tokio::join!(log.read_all(&read_cursor, REBUILD_PAGE), apply);
        let (returned, result) = applied.map_err(|e| ProjectionError::Task(e.to_string()))?;
        state = returned;
        result?;
        events += count;
        progress(events);
        page = next?;
    }
    tokio::task::spawn_blocking(move || {
        let RunnerState {
            conn, mut slots, ..
        } = *state;
        for slot in &mut slots {
            slot.projection.load(&conn)?;
        }
        Ok::<_, ProjectionError>(())
    })
    .await
    .map_err(|e| ProjectionError::Task(e.to_string()))??;
    let elapsed = started.elapsed();
    Ok(RebuildReport {
        projection: name,
        events,
        elapsed,
        events_per_second: events as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(entries: &[(&str, u64)]) -> Cursor {
        Cursor(entries.iter().map(|(p, o)| ((*p).to_owned(), *o)).collect())
    }

    #[test]
    fn min_cursor_takes_the_lowest_offset_per_partition() {
        let a = cursor(&[("log", 10), ("x/0", 3)]);
        let b = cursor(&[("log", 7)]);
        assert_eq!(min_cursor([&a, &b]), cursor(&[("log", 7)]));
        assert_eq!(min_cursor([&a]), a);
        assert_eq!(min_cursor(std::iter::empty()), Cursor::start());
    }

    #[test]
    fn covers_compares_every_named_partition() {
        let progress = cursor(&[("log", 10)]);
        assert!(covers(&progress, &cursor(&[("log", 10)])));
        assert!(!covers(&progress, &cursor(&[("log", 11)])));
        assert!(!covers(&progress, &cursor(&[("log", 1), ("x/0", 1)])));
        assert!(covers(&progress, &Cursor::start()));
    }
}
