//! Command-line interface: argument definitions and dispatch to each command.

mod accounts;
mod audit;
mod balance;
mod bench;
mod bench_streams;
mod billing;
mod calls;
mod events;
mod numbers;
mod rebuild;
mod source;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Dialtone: a self-hosted, event-sourced programmable-voice platform.
#[derive(Debug, Parser)]
#[command(name = "dialtone", version, about, long_about = None)]
pub struct Cli {
    /// More logging (-v debug, -vv trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run Dialtone: SIP edge, voice, media, API, projections and callbacks in one process.
    Serve(crate::config::ServeArgs),
    /// Manage accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Drop read models and rebuild them from the event log (stop the server first).
    Rebuild {
        #[command(flatten)]
        log: source::LogArgs,
        /// Only this projection (accounts, numbers, calls, billing, recordings, callbacks,
        /// conferences, sinks).
        #[arg(long)]
        projection: Option<String>,
    },
    /// Calls, read from the log.
    #[command(subcommand)]
    Calls(CallsCommand),
    /// The event log's events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Check the integrity of the event log; export an account's history for offline checks.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Rate tables, re-rating and reconciliation.
    #[command(subcommand)]
    Billing(billing::BillingCommand),
    /// The number inventory accounts buy from.
    #[command(subcommand)]
    Numbers(NumbersCommand),
    /// Benchmarks that print their figures and the machine they ran on.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum NumbersCommand {
    /// Stock numbers from a CSV file (header `number,country,type,region,locality,voice,sms,
    /// monthly_price`; type local/toll-free/mobile, voice/sms true/false, the price a decimal
    /// in the billing currency). Good rows load; bad ones are reported with their line (exit 1).
    Import {
        file: PathBuf,
        #[command(flatten)]
        log: source::LogArgs,
    },
    /// Print the bearer token of the operator endpoints (`POST /v1/PhoneNumberInventory`).
    OperatorToken {
        #[command(flatten)]
        log: source::LogArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create an account; prints `{"account_sid": "AC…", "auth_token": "…"}`.
    Create {
        #[arg(long, default_value = "Dialtone account")]
        friendly_name: String,
        #[arg(long, env = "DIALTONE_DATA_DIR", default_value = "./dialtone-data")]
        data_dir: PathBuf,
        /// Event log: `sqlite` or `kafka://HOST:PORT`.
        #[arg(long, env = "DIALTONE_LOG", default_value = "sqlite")]
        log: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk every stream (or one account's, or one): sequences gap-free, every prevhash
    /// matching, every stored hash matching. Exits 1 naming the first break.
    Verify(audit::VerifyArgs),
    /// An account's events with their hash-chain fields, one JSON object per line, to check
    /// offline with docs/audit/verify.py.
    Export(audit::ExportArgs),
}

#[derive(Debug, Subcommand)]
pub enum CallsCommand {
    /// One call's timeline: offset, event and key facts (SIP codes, webhooks, TwiML verbs,
    /// digits, recordings), its child legs and its charge.
    History {
        /// The call (`CA…`).
        call_sid: String,
        /// The timeline as JSON, each entry with its CloudEvent.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        log: source::LogArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The latest events, then (with --follow) each as it is appended.
    Tail(events::TailArgs),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Durable appends from concurrent writers, each on its own streams.
    Log(bench::LogBenchArgs),
    /// Concurrent RTP playout streams (G.711, 20 ms) to a local sink: send jitter and CPU.
    Media(bench::MediaBenchArgs),
    /// Live event-stream subscribers (SSE) while the log takes appends: delivered events/s,
    /// append-to-client latency, memory.
    Streams(bench_streams::StreamsBenchArgs),
}

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => crate::serve::serve(args).await,
        Command::Accounts(AccountsCommand::Create {
            friendly_name,
            data_dir,
            log,
        }) => accounts::create(&friendly_name, data_dir, log).await,
        Command::Audit(AuditCommand::Verify(args)) => audit::verify(args).await,
        Command::Audit(AuditCommand::Export(args)) => audit::export(args).await,
        Command::Calls(CallsCommand::History {
            call_sid,
            json,
            log,
        }) => calls::history(&call_sid, json, &log).await,
        Command::Events(EventsCommand::Tail(args)) => events::tail(args).await,
        Command::Billing(command) => billing::run(command).await,
        Command::Numbers(NumbersCommand::Import { file, log }) => {
            numbers::import(&file, &log).await
        }
        Command::Numbers(NumbersCommand::OperatorToken { log }) => numbers::operator_token(&log),
        Command::Rebuild { log, projection } => rebuild::run(&log, projection).await,
        Command::Bench(BenchCommand::Log(args)) => bench::log(args).await,
        Command::Bench(BenchCommand::Media(args)) => bench::media(args).await,
        Command::Bench(BenchCommand::Streams(args)) => bench_streams::streams(args).await,
    }
}
