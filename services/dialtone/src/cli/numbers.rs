//! `dialtone numbers …`: the operator's number inventory. `import FILE.csv` stocks the DIDs
//! its carriers assigned (header `number,country,type,region,locality,voice,sms,
//! monthly_price`): the good rows load, each bad row is reported with its line, and no row
//! is ever half loaded (each is one event). `operator-token` prints the bearer token of the
//! REST operator endpoints.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use dialtone_projections::inventory::{parse_inventory_csv, stock_numbers};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::source::LogArgs;

pub async fn import(file: &Path, args: &LogArgs) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let parsed =
        parse_inventory_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    for (line, error) in &parsed.refused {
        eprintln!("{}:{line}: {error}", file.display());
    }
    let source = args.open().await?;
    let bar = ProgressBar::new(parsed.rows.len() as u64).with_style(
        ProgressStyle::with_template("{spinner} stocking {pos}/{len} numbers {wide_bar} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let stocked = stock_numbers(source.log.as_ref(), &parsed.rows, |done| {
        bar.set_position(done as u64)
    })
    .await
    .context("writing the inventory to the log")?;
    bar.finish_and_clear();
    println!(
        "{}",
        json!({
            "stocked": stocked,
            "refused": parsed
                .refused
                .iter()
                .map(|(line, error)| json!({"line": line, "error": error}))
                .collect::<Vec<_>>(),
        })
    );
    // Bad rows make the exit status say so, after the good ones loaded.
    Ok(if parsed.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn operator_token(args: &LogArgs) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    let secret = crate::secret::load_or_create(&config.data_dir)?;
    println!("{}", dialtone_api::operator_token(&secret));
    Ok(ExitCode::SUCCESS)
}
