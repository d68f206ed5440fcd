//! `dialtone audit verify`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use dialtone_events::audit::VerifyReport;
use dialtone_events::sqlite::SqliteLog;
use indicatif::{ProgressBar, ProgressStyle};

use crate::paths::DataDir;

pub async fn verify(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let dir = DataDir::new(data_dir);
    let path = dir.event_log();
    anyhow::ensure!(path.exists(), "no event log at {}", path.display());
    let log =
        SqliteLog::open(&path, "audit").with_context(|| format!("opening {}", path.display()))?;
    let total = log.count().await?;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{spinner} verifying {pos}/{len} events {wide_bar} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = tokio::task::spawn_blocking(move || {
        let report = log.verify(|checked| bar.set_position(checked));
        bar.finish_and_clear();
        report
    })
    .await??;
    match report {
        VerifyReport::Ok { streams, events } => {
            println!("ok: {streams} streams, {events} events");
            Ok(ExitCode::SUCCESS)
        }
        VerifyReport::Broken(broken) => {
            println!(
                "broken: stream {} sequence {}: {}",
                broken.stream, broken.sequence, broken.reason
            );
            Ok(ExitCode::from(1))
        }
    }
}
