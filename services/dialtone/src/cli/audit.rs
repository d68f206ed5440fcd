//! `dialtone audit verify` (the hash chains of the whole log, one account or one stream) and
//! `dialtone audit export` (an account's events with their chain fields, one JSON object per
//! line, verifiable offline: docs/audit.md, docs/audit/verify.py).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use dialtone_events::audit::{verify_log, Verifier, VerifyReport};
use dialtone_events::envelope::parse_time;
use dialtone_events::sqlite::SqliteLog;
use dialtone_events::Cursor;
use indicatif::{ProgressBar, ProgressStyle};

use super::source::LogArgs;
use crate::config::LogBackend;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Only this stream (`CA…`, `PN…`, …).
    #[arg(long, conflicts_with = "account")]
    pub stream: Option<String>,
    /// Only this account's streams.
    #[arg(long)]
    pub account: Option<String>,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The account whose events to export (operator-wide rate tables come along: they price
    /// its calls).
    #[arg(long)]
    pub account: String,
    /// Only events at or after this time (RFC 3339).
    #[arg(long)]
    pub from: Option<String>,
    /// Only events at or before this time (RFC 3339).
    #[arg(long)]
    pub to: Option<String>,
    /// Write here instead of standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
}

/// A progress bar on standard error; hidden when that is not a terminal.
fn bar(total: Option<u64>, what: &str) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} {what} {{pos}}/{{len}} events {{wide_bar}} {{eta}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template(&format!("{{spinner}} {what} {{pos}} events {{per_sec}}"))
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar
}

fn report(outcome: VerifyReport) -> ExitCode {
    match outcome {
        VerifyReport::Ok { streams, events } => {
            println!("ok: {streams} streams, {events} events");
            ExitCode::SUCCESS
        }
        VerifyReport::Broken(broken) => {
            println!(
                "broken: stream {} sequence {}: {}",
                broken.stream, broken.sequence, broken.reason
            );
            ExitCode::from(1)
        }
    }
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let config = args.log.config()?;
    if args.stream.is_none()
        && args.account.is_none()
        && config.log_backend()? == LogBackend::Sqlite
    {
        // The embedded log also keeps each event's own hash: checked here too.
        let data = crate::paths::DataDir::new(&config.data_dir);
        let path = data.event_log();
        anyhow::ensure!(path.exists(), "no event log at {}", path.display());
        let log = SqliteLog::open(&path, "audit")
            .with_context(|| format!("opening {}", path.display()))?;
        let total = log.count().await?;
        let bar = bar(Some(total), "verifying");
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = log.verify(|checked| bar.set_position(checked));
            bar.finish_and_clear();
            outcome
        })
        .await??;
        return Ok(report(outcome));
    }
    let source = args.log.open().await?;
    let log = source.log.as_ref();
    if let Some(stream) = &args.stream {
        let events = log.read_stream(stream, 1).await?;
        anyhow::ensure!(!events.is_empty(), "no stream {stream} in the log");
        let mut verifier = Verifier::default();
        for recorded in &events {
            if let Err(broken) = verifier.check(&recorded.event, None) {
                return Ok(report(VerifyReport::Broken(broken)));
            }
        }
        return Ok(report(verifier.finish()));
    }
    let bar = bar(None, "verifying");
    let outcome = match &args.account {
        None => verify_log(log, |n| bar.set_position(n)).await?,
        Some(account) => {
            let mut verifier = Verifier::default();
            let mut cursor = Cursor::start();
            let mut broken = None;
            loop {
                let page = log.read_all(&cursor, 5_000).await?;
                if page.is_empty() {
                    break;
                }
                for recorded in &page {
                    cursor.advance(&recorded.position);
                    if recorded.event.accountsid == *account && broken.is_none() {
                        if let Err(b) = verifier.check(&recorded.event, None) {
                            broken = Some(b);
                        }
                    }
                }
                bar.set_position(verifier.events);
                if broken.is_some() {
                    break;
                }
            }
            match broken {
                Some(b) => VerifyReport::Broken(b),
                None => verifier.finish(),
            }
        }
    };
    bar.finish_and_clear();
    Ok(report(outcome))
}

/// One line of an export: the event exactly as stored, its hash, its position.
pub fn export_line(event_json: &str, hash: &str, position: &str) -> String {
    format!(
        "{{\"event\":{event_json},\"hash\":\"{hash}\",\"position\":{}}}",
        serde_json::Value::from(position)
    )
}

pub async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let time = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| {
                parse_time(v).with_context(|| format!("--{name} {v:?} is not an RFC 3339 time"))
            })
            .transpose()
    };
    let (from, to) = (time("from", &args.from)?, time("to", &args.to)?);
    let source = args.log.open().await?;
    let log = source.log.as_ref();
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let head = log.head().await?;
    let bar = bar(None, "exporting");
    let (mut cursor, mut written, mut streams) =
        (Cursor::start(), 0u64, std::collections::HashSet::new());
    'pages: loop {
        let page = log.read_all(&cursor, 5_000).await?;
        if page.is_empty() {
            break;
        }
        for recorded in page {
            cursor.advance(&recorded.position);
            let event = &recorded.event;
            let operator_rates =
                event.accountsid.is_empty() && event.event_type.starts_with("dialtone.rate.");
            let in_range =
                from.is_none_or(|f| event.time >= f) && to.is_none_or(|t| event.time <= t);
            if (event.accountsid == args.account || operator_rates) && in_range {
                writeln!(
                    out,
                    "{}",
                    export_line(
                        &event.to_json(),
                        &event.hash(),
                        &log.position_token(&cursor)
                    )
                )?;
                streams.insert(event.subject.clone());
                written += 1;
            }
            bar.inc(1);
        }
        if head
            .0
            .iter()
            .all(|(p, next)| cursor.next_offset(p) >= *next)
        {
            break 'pages;
        }
    }
    out.flush()?;
    bar.finish_and_clear();
    eprintln!("exported {written} events of {} streams", streams.len());
    Ok(ExitCode::SUCCESS)
}
