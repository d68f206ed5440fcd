//! Where a command finds the log and the read models: the same settings as `serve`
//! (`--config`, `--data-dir`, `--log`, or their environment variables).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use dialtone_events::EventLog;
use dialtone_projections::ReadModels;

use crate::config::{Config, LogBackend, ServeArgs};
use crate::paths::DataDir;

#[derive(Debug, Clone, Default, Args)]
pub struct LogArgs {
    /// TOML configuration file (as for `serve`).
    #[arg(long, env = "DIALTONE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded log and read models.
    #[arg(long, env = "DIALTONE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Event log: `sqlite` or `kafka://HOST:PORT[,HOST:PORT…]`.
    #[arg(long, env = "DIALTONE_LOG")]
    pub log: Option<String>,
}

/// An opened log, its configuration and data dir.
pub struct Source {
    pub config: Config,
    pub data: DataDir,
    pub log: Arc<dyn EventLog>,
}

impl LogArgs {
    /// The effective configuration.
    pub fn config(&self) -> anyhow::Result<Config> {
        Ok(Config::load(&ServeArgs {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            log: self.log.clone(),
            ..ServeArgs::default()
        })?)
    }

    /// Opens the log; an embedded log must exist already (a typo in `--data-dir` is an
    /// error, not a new empty log).
    pub async fn open(&self) -> anyhow::Result<Source> {
        let config = self.config()?;
        let data = DataDir::new(&config.data_dir);
        if config.log_backend()? == LogBackend::Sqlite {
            anyhow::ensure!(
                data.event_log().exists(),
                "no event log at {} (give --data-dir or --log)",
                data.event_log().display()
            );
        }
        let log = crate::serve::open_log(&config, &data)
            .await
            .context("opening the event log")?;
        Ok(Source { config, data, log })
    }
}

impl Source {
    /// The read models of this data dir, if the projections ever ran here.
    pub fn read_models(&self) -> Option<ReadModels> {
        let path = self.data.read_models();
        path.exists().then(|| ReadModels::new(path))
    }
}
