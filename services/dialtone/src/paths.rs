//! Where things live inside a data directory.

use std::path::{Path, PathBuf};

/// A data directory: the embedded log, read models, recordings, secrets and caches.
#[derive(Debug, Clone)]
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(path: impl AsRef<Path>) -> DataDir {
        DataDir(path.as_ref().to_path_buf())
    }

    pub fn root(&self) -> &Path {
        &self.0
    }

    /// The embedded (SQLite) event log.
    pub fn event_log(&self) -> PathBuf {
        self.0.join("events.db")
    }

    /// The read models and projection checkpoints.
    pub fn read_models(&self) -> PathBuf {
        self.0.join(dialtone_projections::READ_MODELS_FILE)
    }

    /// Recordings (WAV files named by recording SID).
    pub fn recordings(&self) -> PathBuf {
        self.0.join("recordings")
    }

    /// Synthesised speech kept across restarts.
    pub fn tts_cache(&self) -> PathBuf {
        self.0.join("tts-cache")
    }
}
