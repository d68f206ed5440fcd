//! `dialtone bench …`: benchmarks that print the machine and, as their last line, their
//! figures in `key=value` form.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use dialtone_events::kafka::{KafkaConfig, KafkaLog};
use dialtone_events::payload::MediaSay;
use dialtone_events::sid::{AccountSid, CallSid};
use dialtone_events::sqlite::SqliteLog;
use dialtone_events::{EventLog, ExpectedVersion, NewEvent};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Backend {
    Sqlite,
    Kafka,
}

#[derive(Debug, Args)]
pub struct LogBenchArgs {
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// Where the SQLite log is created (a fresh temporary directory when absent).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Events to append in all.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Concurrent writers; each appends one event at a time to its own streams.
    #[arg(long, default_value_t = 64)]
    writers: u64,
    /// Size of each event's payload.
    #[arg(long, default_value_t = 300)]
    payload_bytes: usize,
    /// Events per stream before a writer moves on to a new stream (a call's worth).
    #[arg(long, default_value_t = 20)]
    events_per_stream: u64,
}

#[derive(Debug, Args)]
pub struct MediaBenchArgs {
    /// Concurrent G.711 streams.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Playout threads (default: one per core, at most 4).
    #[arg(long)]
    engine_threads: Option<usize>,
    /// Run the playout threads with SCHED_FIFO at this priority (needs root or
    /// CAP_SYS_NICE).
    #[arg(long)]
    realtime_priority: Option<u8>,
}

/// Plays N streams to a local sink; last line `streams=<n> p99_jitter_us=<n> cpu_pct=<n>`.
pub async fn media(args: MediaBenchArgs) -> anyhow::Result<ExitCode> {
    let mut options = dialtone_media::bench::BenchOptions::new(args.streams, args.seconds);
    if let Some(threads) = args.engine_threads {
        options.engine_threads = threads.max(1);
    }
    options.realtime_priority = args.realtime_priority;
    let result = tokio::task::spawn_blocking(move || {
        dialtone_media::bench::run_playout_bench_with(&options)
    })
    .await
    .context("benchmark thread")??;
    println!("{}", crate::machine::describe());
    println!("{result}");
    Ok(ExitCode::SUCCESS)
}

pub async fn log(args: LogBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.writers > 0 && args.events > 0,
        "--writers and --events must be positive"
    );
    let _tempdir;
    let log: Arc<dyn EventLog> = match args.backend {
        Backend::Sqlite => {
            let dir = match &args.data_dir {
                Some(dir) => dir.clone(),
                None => {
                    let temp = tempfile::tempdir().context("creating a temporary data dir")?;
                    let path = temp.path().to_path_buf();
                    _tempdir = temp;
                    path
                }
            };
            Arc::new(SqliteLog::open(dir.join("events.db"), "bench")?)
        }
        Backend::Kafka => {
            let mut config = KafkaConfig::new(args.brokers.clone(), "bench");
            // A fresh prefix: the benchmark never mixes with real topics.
            config.topic_prefix = format!("bench-{}", uuid_suffix());
            Arc::new(KafkaLog::open(config).await?)
        }
    };

    let account = AccountSid::generate();
    // A Say command of the requested size: a realistic event body.
    let text: String = "lorem ipsum dolor sit amet "
        .chars()
        .cycle()
        .take(args.payload_bytes.saturating_sub(60))
        .collect();
    let payload = MediaSay {
        text,
        voice: "alice".into(),
        language: "en-US".into(),
        loops: 1,
        ssml: None,
    };
    let bar = ProgressBar::new(args.events).with_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} events {wide_bar} {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let count = args.events / args.writers + u64::from(w < args.events % args.writers);
        let (log, account, payload, bar) =
            (log.clone(), account.clone(), payload.clone(), bar.clone());
        let per_stream = args.events_per_stream.max(1);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(count as usize);
            let mut stream = CallSid::generate();
            for i in 0..count {
                if i > 0 && i % per_stream == 0 {
                    stream = CallSid::generate();
                }
                let expected = ExpectedVersion::Exact(i % per_stream);
                let event = NewEvent::new(account.as_str(), payload.clone());
                let t = Instant::now();
                log.append(stream.as_str(), expected, vec![event]).await?;
                latencies.push(t.elapsed());
                bar.inc(1);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(args.events as usize);
    for task in tasks {
        latencies.extend(task.await.context("writer task")??);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_micros()
    };
    println!("{}", crate::machine::describe());
    println!(
        "backend={:?} events={} writers={} payload_bytes={} seconds={:.2}",
        args.backend,
        args.events,
        args.writers,
        args.payload_bytes,
        elapsed.as_secs_f64()
    );
    println!(
        "events_per_sec={} p50_us={} p99_us={}",
        (args.events as f64 / elapsed.as_secs_f64()) as u64,
        pct(0.50),
        pct(0.99)
    );
    Ok(ExitCode::SUCCESS)
}

fn uuid_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}
