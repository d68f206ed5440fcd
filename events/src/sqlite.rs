//! The embedded event log: one SQLite file in WAL mode.
//!
//! One writer thread owns the only write connection. It takes every append waiting in its
//! queue, checks versions, assigns sequences and hashes, inserts them in one transaction and
//! commits: group commit, so durability costs one fsync per batch rather than per event.
//! The fsync itself runs on a second thread (the syncer) so that the writer can prepare and
//! commit the next batch while the previous one reaches the disk: the writer commits with
//! `synchronous=OFF` (the WAL frames are written, not synced), hands the batch's replies to
//! the syncer, and the syncer `fdatasync`s the WAL file before answering any of them. An
//! append is acknowledged, and subscribers are woken, only once its batch is durable.
//! Checkpoints run on a third thread whose connection keeps `synchronous=FULL`, so the
//! database file is synced before the WAL is reused. Readers use their own connections.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::audit::{Verifier, VerifyReport};
use crate::envelope::{
    chain_hash, content_hash, content_json, micros, parse_time, Event, GENESIS_HASH,
};
use crate::log::{
    family_of, Appended, Cursor, EventLog, ExpectedVersion, Filter, LogError, NewEvent, Position,
    RecordedEvent, Subscription,
};
use crate::position::PositionError;

/// The only partition of the SQLite log.
pub const PARTITION: &str = "log";

/// Events per writer transaction at most; bounds the latency a huge batch adds.
const MAX_BATCH_EVENTS: usize = 20_000;
/// Stream heads remembered by the writer before it forgets them all.
const HEAD_CACHE_LIMIT: usize = 500_000;
/// How often an idle subscriber looks for appends made by other processes.
const EXTERNAL_POLL: std::time::Duration = std::time::Duration::from_millis(500);

fn external_check_due(last: &mut std::time::Instant) -> bool {
    if last.elapsed() >= EXTERNAL_POLL {
        *last = std::time::Instant::now();
        true
    } else {
        false
    }
}

/// Events fetched per read when catching up a subscriber.
const SUBSCRIBE_PAGE: usize = 2_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position   INTEGER PRIMARY KEY,
    stream     TEXT    NOT NULL,
    sequence   INTEGER NOT NULL,
    id         TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    time       TEXT    NOT NULL,
    accountsid TEXT    NOT NULL,
    prevhash   TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    UNIQUE (stream, sequence)
);
";

const SELECT_COLUMNS: &str =
    "position, stream, sequence, id, type, source, time, accountsid, prevhash, data";

/// A `UNIQUE` constraint failed: a row the writer thought free exists.
fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> LogError {
    move |source| LogError::Sqlite { context, source }
}

struct AppendRequest {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<PreparedEvent>,
    reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// An event with everything but its place in the stream worked out, by the appending task
/// rather than the single writer thread: id, time, JSON and the content hash.
struct PreparedEvent {
    id: String,
    event_type: String,
    time: String,
    accountsid: String,
    data: Box<RawValue>,
    content_hash: String,
}

impl PreparedEvent {
    fn new(new: NewEvent, source: &str, stream: &str, now: OffsetDateTime) -> PreparedEvent {
        let id = new.id.unwrap_or_else(Uuid::now_v7);
        let time = crate::envelope::format_time(new.time.map(micros).unwrap_or(now));
        let data = new.payload.to_raw();
        let event_type = new.payload.event_type().to_owned();
        let content = content_json(
            id,
            &event_type,
            source,
            stream,
            &time,
            &new.accountsid,
            &data,
        );
        PreparedEvent {
            id: id.to_string(),
            event_type,
            time,
            accountsid: new.accountsid,
            data,
            content_hash: content_hash(content.as_bytes()),
        }
    }
}

/// The SQLite event log. Cheap to share behind an `Arc`.
pub struct SqliteLog {
    path: PathBuf,
    writer: Mutex<Option<std::sync::mpsc::Sender<AppendRequest>>>,
    /// The writer and the syncer threads.
    writer_thread: Mutex<Option<(thread::JoinHandle<()>, thread::JoinHandle<()>)>>,
    checkpointer: Mutex<Option<(std::sync::mpsc::Sender<()>, thread::JoinHandle<()>)>>,
    committed: watch::Receiver<u64>,
    inflight: Arc<Inflight>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// `dialtone://<node>`.
    source: String,
}

/// Batches the writer has begun and the syncer has finished with. When they are equal
/// nothing is committed-but-not-yet-synced, so every row in the file is durable (including
/// rows another process appended).
#[derive(Default)]
struct Inflight {
    started: std::sync::atomic::AtomicU64,
    finished: std::sync::atomic::AtomicU64,
}

/// The highest position a reader may see: what this process has made durable, or, when
/// none of its batches is in flight, everything in the file (other processes may append to
/// the same log, e.g. `dialtone accounts create` beside a running server). Readers never see
/// an event before its append is durable.
fn durable_limit(conn: &Connection, committed: u64, inflight: &Inflight) -> Result<u64, LogError> {
    use std::sync::atomic::Ordering::SeqCst;
    let started = inflight.started.load(SeqCst);
    if started != inflight.finished.load(SeqCst) {
        return Ok(committed);
    }
    let max: u64 = conn
        .query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
            r.get(0)
        })
        .map_err(sql("reading the last position"))?;
    // A batch that began meanwhile may have added rows that are not synced yet.
    if inflight.started.load(SeqCst) != started {
        return Ok(committed);
    }
    Ok(committed.max(max))
}

impl SqliteLog {
    /// Opens (creating if needed) the log at `path`; `node` names this writer in `source`.
    pub fn open(path: impl AsRef<Path>, node: &str) -> Result<SqliteLog, LogError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|source| LogError::Io {
                    context: "creating the data dir",
                    source,
                })?;
            }
        }
        let conn = Connection::open(&path).map_err(sql("opening the log"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql("enabling WAL"))?;
        // The syncer thread fsyncs the WAL after each commit (see the module docs).
        conn.pragma_update(None, "synchronous", "OFF")
            .map_err(sql("setting synchronous"))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(sql("busy timeout"))?;
        conn.execute_batch(SCHEMA)
            .map_err(sql("creating the schema"))?;
        let last: u64 = conn
            .query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                r.get(0)
            })
            .map_err(sql("reading the last position"))?;

        let (committed_tx, committed) = watch::channel(last);
        let (tx, rx) = std::sync::mpsc::channel();
        let (durable_tx, durable_rx) = std::sync::mpsc::channel::<Durability>();
        let poisoned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let inflight = Arc::new(Inflight::default());
        let syncer = {
            let wal = wal_path(&path);
            let (poisoned, inflight) = (poisoned.clone(), inflight.clone());
            thread::Builder::new()
                .name("sqlite-log-syncer".into())
                .spawn(move || run_syncer(&wal, durable_rx, committed_tx, &poisoned, &inflight))
                .map_err(|source| LogError::Io {
                    context: "starting the syncer thread",
                    source,
                })?
        };
        let writer = Writer {
            conn,
            source: format!("dialtone://{node}"),
            heads: HashMap::new(),
            durable: durable_tx,
            poisoned,
            inflight: inflight.clone(),
        };
        let handle = thread::Builder::new()
            .name("sqlite-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| LogError::Io {
                context: "starting the writer thread",
                source,
            })?;
        let (stop_checkpointer, stopped) = std::sync::mpsc::channel::<()>();
        let checkpointer = {
            let path = path.clone();
            thread::Builder::new()
                .name("sqlite-log-checkpointer".into())
                .spawn(move || run_checkpointer(&path, stopped))
                .map_err(|source| LogError::Io {
                    context: "starting the checkpointer thread",
                    source,
                })?
        };
        Ok(SqliteLog {
            path,
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some((handle, syncer))),
            checkpointer: Mutex::new(Some((stop_checkpointer, checkpointer))),
            committed,
            inflight,
            readers: Arc::new(Mutex::new(Vec::new())),
            source: format!("dialtone://{node}"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the writer after it has committed everything queued so far.
    pub fn close(&self) {
        drop(self.writer.lock().map(|mut w| w.take()));
        let handles = self.writer_thread.lock().ok().and_then(|mut h| h.take());
        if let Some((writer, syncer)) = handles {
            // The writer ends once its queue is empty; the syncer once it has synced and
            // answered everything the writer committed.
            let _ = writer.join();
            let _ = syncer.join();
        }
        let checkpointer = self.checkpointer.lock().ok().and_then(|mut c| c.take());
        if let Some((stop, handle)) = checkpointer {
            drop(stop);
            let _ = handle.join();
        }
    }

    fn with_reader<T>(
        readers: &Mutex<Vec<Connection>>,
        path: &Path,
        f: impl FnOnce(&Connection) -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        let pooled = readers.lock().ok().and_then(|mut pool| pool.pop());
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sql("opening a reader"))?;
                conn.busy_timeout(std::time::Duration::from_secs(30))
                    .map_err(sql("busy timeout"))?;
                conn
            }
        };
        let result = f(&conn);
        if let Ok(mut pool) = readers.lock() {
            if pool.len() < 16 {
                pool.push(conn);
            }
        }
        result
    }

    async fn read_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || Self::with_reader(&readers, &path, f))
            .await
            .map_err(|_| LogError::Closed)?
    }

    /// Walks every stream in sequence order, checking that sequences are gap-free, that each
    /// `prevhash` is the hash of the previous event and that the stored hash of each event
    /// matches its content. `progress` is called with the number of events checked so far.
    pub fn verify(&self, mut progress: impl FnMut(u64)) -> Result<VerifyReport, LogError> {
        Self::with_reader(&self.readers, &self.path, |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {SELECT_COLUMNS}, hash FROM events ORDER BY stream, sequence"
                ))
                .map_err(sql("verifying"))?;
            let mut rows = stmt.query([]).map_err(sql("verifying"))?;
            let mut verifier = Verifier::default();
            while let Some(row) = rows.next().map_err(sql("verifying"))? {
                let recorded = row_to_event(row)?;
                let stored_hash: String = row.get(10).map_err(sql("verifying"))?;
                if let Err(broken) = verifier.check(&recorded.event, Some(&stored_hash)) {
                    return Ok(VerifyReport::Broken(broken));
                }
                if verifier.events % 10_000 == 0 {
                    progress(verifier.events);
                }
            }
            progress(verifier.events);
            Ok(verifier.finish())
        })
    }

    /// Number of events in the log.
    pub async fn count(&self) -> Result<u64, LogError> {
        self.read_blocking(|conn| {
            conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
                .map_err(sql("counting events"))
        })
        .await
    }
}

impl Drop for SqliteLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Copies committed WAL pages into the database file every few hundred milliseconds.
fn run_checkpointer(path: &Path, stop: std::sync::mpsc::Receiver<()>) {
    let conn = match Connection::open(path) {
        Ok(conn) => conn,
        Err(error) => {
            tracing::error!(%error, "cannot open the checkpoint connection; the WAL will grow");
            return;
        }
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
    // Checkpoints copy WAL pages into the database file; FULL syncs the file before the WAL
    // may be reused, which the writer's own `synchronous=OFF` connection relies on.
    if let Err(error) = conn.pragma_update(None, "synchronous", "FULL") {
        tracing::error!(%error, "cannot make checkpoints synchronous");
    }
    loop {
        match stop.recv_timeout(std::time::Duration::from_millis(250)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            // Closed: one last checkpoint so a clean shutdown leaves a small WAL.
            _ => {
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                return;
            }
        }
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(%error, "WAL checkpoint failed");
        }
    }
}

fn row_to_event(row: &rusqlite::Row<'_>) -> Result<RecordedEvent, LogError> {
    let position: u64 = row.get(0).map_err(sql("reading an event"))?;
    let corrupt = |message: String| LogError::Corrupt {
        position: position.to_string(),
        message,
    };
    let id: String = row.get(3).map_err(sql("reading an event"))?;
    let time: String = row.get(6).map_err(sql("reading an event"))?;
    let data: String = row.get(9).map_err(sql("reading an event"))?;
    Ok(RecordedEvent {
        position: Position {
            partition: PARTITION.to_owned(),
            offset: position,
        },
        event: Event {
            id: Uuid::parse_str(&id).map_err(|e| corrupt(format!("bad id {id:?}: {e}")))?,
            event_type: row.get(4).map_err(sql("reading an event"))?,
            source: row.get(5).map_err(sql("reading an event"))?,
            subject: row.get(1).map_err(sql("reading an event"))?,
            time: parse_time(&time).map_err(|e| corrupt(format!("bad time {time:?}: {e}")))?,
            accountsid: row.get(7).map_err(sql("reading an event"))?,
            sequence: row.get(2).map_err(sql("reading an event"))?,
            prevhash: row.get(8).map_err(sql("reading an event"))?,
            data: RawValue::from_string(data).map_err(|e| corrupt(format!("bad data: {e}")))?,
        },
    })
}

fn query_events(
    conn: &Connection,
    where_clause: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<RecordedEvent>, LogError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {SELECT_COLUMNS} FROM events {where_clause}"
        ))
        .map_err(sql("preparing a read"))?;
    let mut rows = stmt.query(params).map_err(sql("reading events"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql("reading events"))? {
        out.push(row_to_event(row)?);
    }
    Ok(out)
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, LogError> {
        family_of(stream)?;
        if events.is_empty() {
            return Err(LogError::EmptyAppend);
        }
        let now = micros(OffsetDateTime::now_utc());
        let events = events
            .into_iter()
            .map(|new| PreparedEvent::new(new, &self.source, stream, now))
            .collect();
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            stream: stream.to_owned(),
            expected,
            events,
            reply,
        };
        {
            let writer = self.writer.lock().map_err(|_| LogError::Closed)?;
            writer
                .as_ref()
                .ok_or(LogError::Closed)?
                .send(request)
                .map_err(|_| LogError::Closed)?;
        }
        answer.await.map_err(|_| LogError::Closed)?
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_sequence: u64,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let stream = stream.to_owned();
        let (committed, inflight) = (*self.committed.borrow(), self.inflight.clone());
        self.read_blocking(move |conn| {
            let limit = durable_limit(conn, committed, &inflight)?;
            query_events(
                conn,
                "WHERE stream = ?1 AND sequence >= ?2 AND position <= ?3 ORDER BY sequence",
                params![stream, from_sequence, limit],
            )
        })
        .await
    }

    async fn read_all(&self, from: &Cursor, limit: usize) -> Result<Vec<RecordedEvent>, LogError> {
        let start = from.next_offset(PARTITION);
        let (committed, inflight) = (*self.committed.borrow(), self.inflight.clone());
        self.read_blocking(move |conn| {
            let last = durable_limit(conn, committed, &inflight)?;
            query_events(
                conn,
                "WHERE position >= ?1 AND position <= ?2 ORDER BY position LIMIT ?3",
                params![start, last, limit as i64],
            )
        })
        .await
    }

    async fn subscribe(&self, from: Cursor, filter: Filter) -> Result<Subscription, LogError> {
        let (tx, subscription) = Subscription::channel(SUBSCRIBE_PAGE);
        let mut committed = self.committed.clone();
        let readers = self.readers.clone();
        let path = self.path.clone();
        let inflight = self.inflight.clone();
        tokio::spawn(async move {
            let mut cursor = from;
            let mut last_external_check = std::time::Instant::now();
            loop {
                // Mark the current commit as seen before reading, so a commit that lands
                // after the read wakes us up: no event can fall between read and wait.
                let last_committed = *committed.borrow_and_update();
                let start = cursor.next_offset(PARTITION);
                let page = if start > last_committed
                    && !external_check_due(&mut last_external_check)
                {
                    Ok(Vec::new())
                } else {
                    let (readers, path, inflight) =
                        (readers.clone(), path.clone(), inflight.clone());
                    tokio::task::spawn_blocking(move || {
                            SqliteLog::with_reader(&readers, &path, |conn| {
                                let last = durable_limit(conn, last_committed, &inflight)?;
                                query_events(
                                    conn,
                                    "WHERE position >= ?1 AND position <= ?2 ORDER BY position LIMIT ?3",
                                    params![start, last, SUBSCRIBE_PAGE as i64],
                                )
                            })
                        })
                        .await
                        .unwrap_or(Err(LogError::Closed))
                };
                match page {
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Ok(events) if events.is_empty() => {
                        // Woken by our own writer at once; the timeout also picks up
                        // appends made by another process on the same file (e.g.
                        // `dialtone accounts create` beside a running server).
                        tokio::select! {
                            changed = committed.changed() => if changed.is_err() { return },
                            _ = tokio::time::sleep(EXTERNAL_POLL) => {}
                            _ = tx.closed() => return,
                        }
                    }
                    Ok(events) => {
                        for recorded in events {
                            cursor.advance(&recorded.position);
                            if filter.matches(&recorded.event)
                                && tx.send(Ok(recorded)).await.is_err()
                            {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(subscription)
    }

    async fn head(&self) -> Result<Cursor, LogError> {
        let last = *self.committed.borrow();
        let mut cursor = Cursor::start();
        // Positions start at 1: an empty log's head is the start.
        if last > 0 {
            cursor.advance(&Position {
                partition: PARTITION.to_owned(),
                offset: last,
            });
        }
        Ok(cursor)
    }

    fn position_token(&self, cursor: &Cursor) -> String {
        crate::position::sqlite_token(cursor, PARTITION)
    }

    fn parse_position(&self, token: &str) -> Result<Cursor, PositionError> {
        crate::position::parse_sqlite_token(token, PARTITION)
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

/// The WAL file beside the database.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

type Reply = oneshot::Sender<Result<Appended, LogError>>;

/// A committed batch waiting for its fsync: the answers to send once it is durable, and its
/// last position.
struct Durability {
    replies: Vec<(Reply, Result<Appended, LogError>)>,
    last: Option<u64>,
}

/// Makes committed batches durable: takes every batch committed so far, fsyncs the WAL once
/// for all of them, then answers their appends and wakes subscribers.
fn run_syncer(
    wal: &Path,
    batches: std::sync::mpsc::Receiver<Durability>,
    committed: watch::Sender<u64>,
    poisoned: &std::sync::atomic::AtomicBool,
    inflight: &Inflight,
) {
    let mut file: Option<std::fs::File> = None;
    while let Ok(first) = batches.recv() {
        let mut ready = vec![first];
        ready.extend(batches.try_iter());
        let synced = (|| -> std::io::Result<()> {
            if file.is_none() {
                file = Some(std::fs::File::open(wal)?);
            }
            match file.as_ref().map(|f| f.sync_data()) {
                Some(Ok(())) => Ok(()),
                _ => {
                    // Reopen once: the WAL may have been recreated.
                    let reopened = std::fs::File::open(wal)?;
                    reopened.sync_data()?;
                    file = Some(reopened);
                    Ok(())
                }
            }
        })();
        match synced {
            Ok(()) => {
                if let Some(last) = ready.iter().filter_map(|d| d.last).max() {
                    committed.send_replace(last);
                }
                inflight
                    .finished
                    .fetch_add(ready.len() as u64, std::sync::atomic::Ordering::SeqCst);
                for durability in ready {
                    for (reply, outcome) in durability.replies {
                        let _ = reply.send(outcome);
                    }
                }
            }
            Err(error) => {
                // Nothing acknowledged can be trusted to the disk any more: refuse this and
                // every later append rather than acknowledge what may be lost.
                tracing::error!(%error, wal = %wal.display(), "fsync of the event log failed; the log stops accepting appends");
                poisoned.store(true, std::sync::atomic::Ordering::SeqCst);
                inflight
                    .finished
                    .fetch_add(ready.len() as u64, std::sync::atomic::Ordering::SeqCst);
                for durability in ready {
                    for (reply, _) in durability.replies {
                        let _ = reply.send(Err(LogError::Io {
                            context: "syncing the event log",
                            source: std::io::Error::new(error.kind(), error.to_string()),
                        }));
                    }
                }
            }
        }
    }
}

/// The writer thread's state.
struct Writer {
    conn: Connection,
    source: String,
    /// Last sequence and hash of recently written streams.
    heads: HashMap<String, (u64, String)>,
    /// Committed batches go to the syncer.
    durable: std::sync::mpsc::Sender<Durability>,
    /// Set by the syncer when an fsync failed.
    poisoned: Arc<std::sync::atomic::AtomicBool>,
    inflight: Arc<Inflight>,
}

/// What the writer decided for one request of a batch.
enum Planned {
    Rejected(LogError),
    Accepted(Appended),
}

impl Writer {
    fn run(mut self, rx: std::sync::mpsc::Receiver<AppendRequest>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            let mut events = batch[0].events.len();
            while events < MAX_BATCH_EVENTS {
                match rx.try_recv() {
                    Ok(next) => {
                        events += next.events.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn head(
        &self,
        stream: &str,
        pending: &HashMap<String, (u64, String)>,
    ) -> Result<(u64, String), LogError> {
        if let Some(head) = pending.get(stream).or_else(|| self.heads.get(stream)) {
            return Ok(head.clone());
        }
        let head = self
            .conn
            .prepare_cached("SELECT sequence, hash FROM events WHERE stream = ?1 ORDER BY sequence DESC LIMIT 1")
            .and_then(|mut stmt| stmt.query_row([stream], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(sql("reading a stream head"))?;
        Ok(head.unwrap_or_else(|| (0, GENESIS_HASH.to_owned())))
    }

    /// Plans and inserts a batch in one transaction: its outcomes, and the stream heads it
    /// leaves.
    #[allow(clippy::type_complexity)]
    fn try_commit(
        &mut self,
        batch: &[AppendRequest],
    ) -> Result<(Vec<Planned>, HashMap<String, (u64, String)>), LogError> {
        let mut pending: HashMap<String, (u64, String)> = HashMap::new();
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(sql("beginning a batch"))?;
        let mut planned = Vec::with_capacity(batch.len());
        for request in batch {
            let (mut sequence, mut prevhash) = self.head(&request.stream, &pending)?;
            if !request.expected.admits(sequence) {
                planned.push(Planned::Rejected(LogError::VersionConflict {
                    stream: request.stream.clone(),
                    expected: request.expected,
                    actual: sequence,
                }));
                continue;
            }
            let first_sequence = sequence + 1;
            let mut positions = Vec::with_capacity(request.events.len());
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (stream, sequence, id, type, source, time, accountsid, prevhash, hash, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(sql("preparing an insert"))?;
            for prepared in &request.events {
                sequence += 1;
                let hash = chain_hash(&prevhash, sequence, &prepared.content_hash);
                insert
                    .execute(params![
                        request.stream,
                        sequence,
                        prepared.id,
                        prepared.event_type,
                        self.source,
                        prepared.time,
                        prepared.accountsid,
                        prevhash,
                        hash,
                        prepared.data.get(),
                    ])
                    .map_err(sql("inserting an event"))?;
                positions.push(Position {
                    partition: PARTITION.to_owned(),
                    offset: tx.last_insert_rowid() as u64,
                });
                prevhash = hash;
            }
            pending.insert(request.stream.clone(), (sequence, prevhash.clone()));
            planned.push(Planned::Accepted(Appended {
                first_sequence,
                last_sequence: sequence,
                positions,
            }));
        }
        tx.commit().map_err(sql("committing a batch"))?;
        Ok((planned, pending))
    }

    fn commit_batch(&mut self, batch: Vec<AppendRequest>) {
        if self.poisoned.load(std::sync::atomic::Ordering::SeqCst) {
            for request in batch {
                let _ = request.reply.send(Err(LogError::Closed));
            }
            return;
        }
        // Counted before the transaction begins, so a reader can tell whether rows it sees
        // may be unsynced (see `durable_limit`).
        self.inflight
            .started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut result = self.try_commit(&batch);
        if matches!(&result, Err(LogError::Sqlite { source, .. }) if is_unique_violation(source)) {
            // Another process (a CLI command beside the server) appended to a stream whose
            // head this writer had cached: forget the cached heads and plan the batch again.
            tracing::debug!("a stream head changed under the writer; retrying the batch");
            self.heads.clear();
            result = self.try_commit(&batch);
        }
        match result {
            Ok((planned, pending)) => {
                if self.heads.len() + pending.len() > HEAD_CACHE_LIMIT {
                    self.heads.clear();
                }
                self.heads.extend(pending);
                let last = planned
                    .iter()
                    .filter_map(|p| match p {
                        Planned::Accepted(a) => a.positions.last().map(|p| p.offset),
                        Planned::Rejected(_) => None,
                    })
                    .max();
                let replies = batch
                    .into_iter()
                    .zip(planned)
                    .map(|(request, outcome)| {
                        let outcome = match outcome {
                            Planned::Accepted(appended) => Ok(appended),
                            Planned::Rejected(error) => Err(error),
                        };
                        (request.reply, outcome)
                    })
                    .collect();
                if let Err(unsent) = self.durable.send(Durability { replies, last }) {
                    self.inflight
                        .finished
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    for (reply, _) in unsent.0.replies {
                        let _ = reply.send(Err(LogError::Closed));
                    }
                }
            }
            Err(error) => {
                self.inflight
                    .finished
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tracing::error!(%error, "event log batch failed; nothing in it was written");
                let message = error.to_string();
                for request in batch {
                    let _ = request.reply.send(Err(LogError::Io {
                        context: "committing a batch",
                        source: std::io::Error::other(message.clone()),
                    }));
                }
            }
        }
    }
}
