//! `dialtone bench streams`: many SSE subscribers of the event stream API while the log
//! takes a steady rate of appends. The server side is what `serve` runs (an embedded log, the
//! projections, the event hub and the real router on a TCP port); the subscribers are plain
//! HTTP/1.1 clients in the same process. Prints delivered events/s, append-to-client latency
//! (the event's envelope time, set when its append began, to its arrival at a client), and the
//! process's resident memory.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use clap::Args;
use dialtone_events::conformance::marker;
use dialtone_events::envelope::parse_time;
use dialtone_events::sid::{AccountSid, CallSid};
use dialtone_events::sqlite::SqliteLog;
use dialtone_events::{EventLog, ExpectedVersion};
use dialtone_projections::{
    create_account, standard_projections, AccountDirectory, NumberDirectory, ProjectionRunner,
    RateTable, ReadModels, RunnerConfig,
};
use dialtone_streams::{EventHub, HubConfig};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Args)]
pub struct StreamsBenchArgs {
    /// Concurrent SSE subscribers.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Accounts the events and subscribers are spread over (subscriber i follows account
    /// i mod accounts): each event reaches subscribers/accounts clients.
    #[arg(long, default_value_t = 100)]
    accounts: usize,
    /// Appends per second, in all.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Measured seconds of appends.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent writers sharing the rate.
    #[arg(long, default_value_t = 64)]
    writers: u64,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What the subscribers measured.
#[derive(Default)]
struct Received {
    events: AtomicU64,
    /// Append-to-client latencies in microseconds, while measuring.
    latencies: Mutex<Vec<u32>>,
}

/// Decodes HTTP/1.1 chunked transfer encoding incrementally.
#[derive(Default)]
struct Dechunker {
    raw: Vec<u8>,
    remaining: usize,
}

impl Dechunker {
    /// Moves the body bytes now decodable from `raw` to `body`.
    fn feed(&mut self, body: &mut Vec<u8>) {
        loop {
            if self.remaining > 0 {
                let take = self.remaining.min(self.raw.len());
                body.extend_from_slice(&self.raw[..take]);
                self.raw.drain(..take);
                self.remaining -= take;
                if self.remaining > 0 {
                    return;
                }
            }
            // Chunk data ends with CRLF; then the next size line.
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let line = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            self.raw.drain(..line_end + 2);
            if line.is_empty() {
                continue;
            }
            self.remaining = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
        }
    }
}

/// One subscriber: a raw HTTP/1.1 SSE request; counts events and their latency.
async fn subscribe(
    address: std::net::SocketAddr,
    account: String,
    token: String,
    received: Arc<Received>,
    measuring: Arc<std::sync::atomic::AtomicBool>,
    connected: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{account}:{token}"));
    let request = format!(
        "GET /v1/Accounts/{account}/Events?Types=dialtone.call.verb.started HTTP/1.1\r\nHost: {address}\r\nAuthorization: Basic {credentials}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buffer = vec![0u8; 8 * 1024];
    let mut head = Vec::new();
    let mut dechunk = Dechunker::default();
    let mut body = Vec::new();
    let mut headers_done = false;
    let mut local = Vec::new();
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        if !headers_done {
            head.extend_from_slice(&buffer[..n]);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            anyhow::ensure!(
                head.starts_with(b"HTTP/1.1 200"),
                "subscription refused: {}",
                String::from_utf8_lossy(&head)
            );
            headers_done = true;
            connected.fetch_add(1, Ordering::SeqCst);
            dechunk.raw.extend_from_slice(&head[end + 4..]);
        } else {
            dechunk.raw.extend_from_slice(&buffer[..n]);
        }
        dechunk.feed(&mut body);
        let now = OffsetDateTime::now_utc();
        let mut consumed = 0;
        while let Some(end) = body[consumed..].windows(2).position(|w| w == b"\n\n") {
            let message = &body[consumed..consumed + end];
            consumed += end + 2;
            let Some(at) = message.windows(8).position(|w| w == b"\"time\":\"") else {
                continue;
            };
            let time =
                std::str::from_utf8(&message[at + 8..(at + 35).min(message.len())]).unwrap_or("");
            received.events.fetch_add(1, Ordering::Relaxed);
            if measuring.load(Ordering::Relaxed) {
                if let Ok(appended) = parse_time(time) {
                    let micros = (now - appended)
                        .whole_microseconds()
                        .clamp(0, u32::MAX as i128);
                    local.push(micros as u32);
                }
            }
        }
        body.drain(..consumed);
        if !local.is_empty() {
            if let Ok(mut latencies) = received.latencies.lock() {
                latencies.append(&mut local);
            }
        }
    }
}

pub async fn streams(args: StreamsBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.subscribers > 0 && args.accounts > 0 && args.rate > 0 && args.writers > 0,
        "--subscribers, --accounts, --rate and --writers must be positive"
    );
    let dir = tempfile::tempdir().context("creating a temporary data dir")?;
    let log: Arc<dyn EventLog> = Arc::new(SqliteLog::open(dir.path().join("events.db"), "bench")?);
    let db = dir.path().join(dialtone_projections::READ_MODELS_FILE);
    let (accounts, numbers) = (AccountDirectory::default(), NumberDirectory::default());
    let runner = ProjectionRunner::start(
        log.clone(),
        &db,
        standard_projections(&accounts, &numbers, RateTable::default()),
        RunnerConfig::default(),
    )
    .await?;
    let mut credentials = Vec::with_capacity(args.accounts);
    for i in 0..args.accounts {
        credentials
            .push(create_account(log.as_ref(), b"bench secret", &format!("bench {i}")).await?);
    }
    runner.catch_up(log.as_ref()).await?;
    let hub = EventHub::start(log.clone(), HubConfig::default()).await?;
    let state = dialtone_api::ApiState::new(
        log.clone(),
        ReadModels::new(&db),
        accounts,
        numbers,
        runner.handle(),
        "bench",
    )
    .with_event_hub(hub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, dialtone_api::router(state)).await });
    let rss_before = rss_kib();

    let received = Arc::new(Received::default());
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let connected = Arc::new(AtomicU64::new(0));
    for i in 0..args.subscribers {
        let (sid, token) = &credentials[i % args.accounts];
        tokio::spawn(subscribe(
            address,
            sid.to_string(),
            token.clone(),
            received.clone(),
            measuring.clone(),
            connected.clone(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while connected.load(Ordering::SeqCst) < args.subscribers as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} subscribers connected",
            connected.load(Ordering::SeqCst),
            args.subscribers
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_connected = rss_kib();

    // Appends at the rate, spread over the accounts, for the measured seconds.
    measuring.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let total = args.rate * args.seconds;
    let appended = Arc::new(AtomicU64::new(0));
    let per_account: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.accounts).map(|_| AtomicU64::new(0)).collect());
    let mut writers = Vec::new();
    for w in 0..args.writers {
        let (log, appended, per_account) = (log.clone(), appended.clone(), per_account.clone());
        let accounts: Vec<AccountSid> = credentials.iter().map(|(sid, _)| sid.clone()).collect();
        let count = total / args.writers + u64::from(w < total % args.writers);
        let period = Duration::from_secs_f64(args.writers as f64 / args.rate as f64);
        writers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut call = CallSid::generate();
            for i in 0..count {
                tick.tick().await;
                if i % 20 == 0 {
                    call = CallSid::generate();
                }
                let index = ((w + i * args.writers) % accounts.len() as u64) as usize;
                let account = &accounts[index];
                log.append(
                    call.as_str(),
                    ExpectedVersion::Any,
                    vec![marker(account, i as u32, "bench")],
                )
                .await?;
                appended.fetch_add(1, Ordering::Relaxed);
                per_account[index].fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for writer in writers {
        writer.await.context("writer task")??;
    }
    let append_seconds = started.elapsed().as_secs_f64();
    // Let the last events arrive.
    // Each event reaches every subscriber of its account.
    let expected: u64 = (0..args.accounts)
        .map(|a| {
            let subscribers = (0..args.subscribers)
                .filter(|i| i % args.accounts == a)
                .count() as u64;
            per_account[a].load(Ordering::Relaxed) * subscribers
        })
        .sum();
    let drain = Instant::now() + Duration::from_secs(10);
    while received.events.load(Ordering::Relaxed) < expected && Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    measuring.store(false, Ordering::SeqCst);
    let elapsed = started.elapsed().as_secs_f64();
    let rss_end = rss_kib();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let delivered = received.events.load(Ordering::Relaxed);
    let mut latencies = received
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!("{}", crate::machine::describe());
    println!(
        "subscribers={} accounts={} rate={} seconds={} appended={} appends_per_sec={}",
        args.subscribers,
        args.accounts,
        args.rate,
        args.seconds,
        appended.load(Ordering::Relaxed),
        (appended.load(Ordering::Relaxed) as f64 / append_seconds) as u64
    );
    println!(
        "delivered={delivered} expected={expected} delivered_per_sec={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} rss_mib_idle={} rss_mib_connected={} rss_mib_end={}",
        (delivered as f64 / elapsed) as u64,
        pct(0.50) as f64 / 1000.0,
        pct(0.99) as f64 / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
        rss_before / 1024,
        rss_connected / 1024,
        rss_end / 1024
    );
    Ok(if delivered >= expected {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{} events did not reach their subscribers",
            expected - delivered
        );
        ExitCode::from(1)
    })
}
