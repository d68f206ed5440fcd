//! `dialtone rebuild`: drops read models and rebuilds them from the log (the server must be
//! stopped: it owns the read models while it runs).

use std::process::ExitCode;

use anyhow::Context;
use dialtone_projections::{rebuild, standard_projections, AccountDirectory, NumberDirectory};
use indicatif::{ProgressBar, ProgressStyle};

use super::source::{LogArgs, Source};

pub async fn run(args: &LogArgs, only: Option<String>) -> anyhow::Result<ExitCode> {
    let Source { config, data, log } = args.open().await?;
    let rates = config.rate_table()?;
    let projections = standard_projections(
        &AccountDirectory::default(),
        &NumberDirectory::default(),
        rates,
    );
    let names: Vec<String> = projections.iter().map(|p| p.name().to_owned()).collect();
    if let Some(only) = &only {
        anyhow::ensure!(
            names.contains(only),
            "no projection {only:?}; there are {}",
            names.join(", ")
        );
    }
    println!("{}", crate::machine::describe());
    for projection in projections {
        if only.as_deref().is_some_and(|o| o != projection.name()) {
            continue;
        }
        let name = projection.name().to_owned();
        let bar = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} rebuilding {msg}: {pos} events {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(name.clone());
        let report = rebuild(log.as_ref(), &data.read_models(), projection, |n| {
            bar.set_position(n)
        })
        .await
        .with_context(|| format!("rebuilding {name}"))?;
        bar.finish_and_clear();
        println!(
            "projection={} events={} seconds={:.2} events_per_sec={}",
            report.projection,
            report.events,
            report.elapsed.as_secs_f64(),
            report.events_per_second as u64
        );
    }
    Ok(ExitCode::SUCCESS)
}
