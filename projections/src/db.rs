//! The read-model database: one SQLite file in WAL mode beside the event log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::projection::{sql, ProjectionError};

/// File name of the read-model database inside the data dir.
pub const READ_MODELS_FILE: &str = "readmodels.db";

/// Idle read connections kept by [`ReadModels`].
const POOL_SIZE: usize = 8;

pub(crate) const CHECKPOINT_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    projection  TEXT    PRIMARY KEY,
    version     INTEGER NOT NULL,
    cursor      TEXT    NOT NULL,
    events_seen INTEGER NOT NULL
);
";

/// Opens (creating if needed) the read-model database for writing.
///
/// `synchronous=NORMAL`: in WAL mode a commit stays atomic, and a power loss can only drop
/// the last transactions *together with* their checkpoint, which the runner then re-applies
/// from the log. Read models need consistency, not per-commit durability.
pub fn open_read_model_db(path: &Path) -> Result<Connection, ProjectionError> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|source| ProjectionError::Io {
                context: "creating the read-model directory",
                source,
            })?;
        }
    }
    let conn = Connection::open(path).map_err(sql("opening the read-model database"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql("enabling WAL"))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql("setting synchronous"))?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(sql("setting the busy timeout"))?;
    conn.execute_batch(CHECKPOINT_SCHEMA)
        .map_err(sql("creating the checkpoint table"))?;
    Ok(conn)
}

/// Read-only access to the read models for queries, with a small connection pool. Cheap to
/// clone. Queries run on the blocking pool so they never stall the async runtime.
#[derive(Clone)]
pub struct ReadModels {
    path: Arc<PathBuf>,
    pool: Arc<Mutex<Vec<Connection>>>,
}

impl ReadModels {
    /// Queries the database at `path` (created by the runner; opening is lazy).
    pub fn new(path: impl AsRef<Path>) -> ReadModels {
        ReadModels {
            path: Arc::new(path.as_ref().to_path_buf()),
            pool: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `query` on a pooled read-only connection, on the calling thread.
    pub fn read_blocking<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, ProjectionError>,
    ) -> Result<T, ProjectionError> {
        let pooled = self.pool.lock().ok().and_then(|mut pool| pool.pop());
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    self.path.as_ref(),
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sql("opening a read-model reader"))?;
                conn.busy_timeout(Duration::from_secs(30))
                    .map_err(sql("setting the busy timeout"))?;
                conn
            }
        };
        let result = query(&conn);
        if let Ok(mut pool) = self.pool.lock() {
            if pool.len() < POOL_SIZE {
                pool.push(conn);
            }
        }
        result
    }

    /// Runs `query` on a pooled read-only connection on the blocking pool.
    pub async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, ProjectionError> + Send + 'static,
    ) -> Result<T, ProjectionError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking(query))
            .await
            .map_err(|e| ProjectionError::Task(e.to_string()))?
    }
}
