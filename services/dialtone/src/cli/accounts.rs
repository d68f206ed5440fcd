//! `dialtone accounts create`.

use std::path::PathBuf;
use std::process::ExitCode;

use dialtone_projections::create_account;

use crate::config::{Config, ServeArgs};
use crate::paths::DataDir;

pub async fn create(
    friendly_name: &str,
    data_dir: PathBuf,
    log: String,
) -> anyhow::Result<ExitCode> {
    let args = ServeArgs {
        data_dir: Some(data_dir),
        log: Some(log),
        ..ServeArgs::default()
    };
    let config = Config::load(&args)?;
    let data = DataDir::new(&config.data_dir);
    let secret = crate::secret::load_or_create(data.root())?;
    let log = crate::serve::open_log(&config, &data).await?;
    let (sid, token) = create_account(log.as_ref(), &secret, friendly_name).await?;
    println!(
        "{}",
        serde_json::json!({ "account_sid": sid, "auth_token": token })
    );
    Ok(ExitCode::SUCCESS)
}
