//! Rebuild throughput (a benchmark, not a timed test):
//! `cargo test --release -p dialtone-projections --test rebuild_bench -- --ignored --nocapture`

use std::sync::Arc;

use dialtone_events::payload::{
    CallAnswered, CallCompleted, CallInitiated, CallRinging, CallStatus, Direction,
};
use dialtone_events::sid::{AccountSid, CallSid};
use dialtone_events::sqlite::SqliteLog;
use dialtone_events::{EventLog, ExpectedVersion, NewEvent};
use dialtone_projections::*;

const CALLS: usize = 50_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn rebuild_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> =
        Arc::new(SqliteLog::open(dir.path().join("events.db"), "bench").unwrap());
    let accounts: Vec<AccountSid> = (0..20).map(|_| AccountSid::generate()).collect();
    let t0 = time::OffsetDateTime::now_utc();
    let mut tasks = Vec::new();
    for writer in 0..200 {
        let log = log.clone();
        let accounts = accounts.clone();
        tasks.push(tokio::spawn(async move {
            for i in (writer..CALLS).step_by(200) {
                let account = &accounts[i % accounts.len()];
                let at = |ms: i64| t0 + time::Duration::milliseconds(ms + i as i64);
                let ev =
                    |p: dialtone_events::Payload, ms| NewEvent::new(account.as_str(), p).at(at(ms));
                let events = vec![
                    ev(
                        CallInitiated {
                            direction: if i % 2 == 0 {
                                Direction::Inbound
                            } else {
                                Direction::OutboundApi
                            },
                            from: "+14155550100".into(),
                            to: "+14155550199".into(),
                            owner_node: "bench".into(),
                            sip_call_id: None,
                            source_addr: None,
                            phone_number_sid: None,
                            parent_call_sid: None,
                            forwarded_from: None,
                            application: Default::default(),
                        }
                        .into(),
                        0,
                    ),
                    ev(CallRinging::default().into(), 10),
                    ev(CallAnswered::default().into(), 1_000),
                    ev(
                        CallCompleted {
                            status: CallStatus::Completed,
                            duration_s: 42,
                            answered_ms: 42_000,
                            answered_at: Some(at(1_000)),
                            hangup_by: "caller".into(),
                            sip_code: None,
                        }
                        .into(),
                        43_000,
                    ),
                ];
                let sid = CallSid::generate();
                log.append(sid.as_str(), ExpectedVersion::NoStream, events)
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let db = dir.path().join(READ_MODELS_FILE);
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!(
        "machine: {machine}, {} cpus",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    for projection in standard_projections(
        &AccountDirectory::default(),
        &NumberDirectory::default(),
        RateTable::default(),
    ) {
        let report = rebuild(log.as_ref(), &db, projection, |_| {})
            .await
            .unwrap();
        println!(
            "rebuild {:<10} {} events in {:>8.3?}: {:>9.0} events/s",
            report.projection, report.events, report.elapsed, report.events_per_second
        );
    }
    // Reading the log through a subscription alone.
    let started = std::time::Instant::now();
    let mut subscription = log
        .subscribe(
            dialtone_events::Cursor::start(),
            dialtone_events::Filter::all(),
        )
        .await
        .unwrap();
    for _ in 0..CALLS * 4 {
        subscription.next().await.unwrap().unwrap();
    }
    println!(
        "reading through a subscription alone: {} events in {:.3?}",
        CALLS * 4,
        started.elapsed()
    );
    // The runner over all projections at once, from scratch.
    let fresh = dir.path().join("fresh.db");
    let started = std::time::Instant::now();
    let runner = ProjectionRunner::start(
        log.clone(),
        &fresh,
        standard_projections(
            &AccountDirectory::default(),
            &NumberDirectory::default(),
            RateTable::default(),
        ),
        RunnerConfig::default(),
    )
    .await
    .unwrap();
    runner.catch_up(log.as_ref()).await.unwrap();
    let batches = runner.handle().progress().batches;
    println!("runner batches: {batches}");
    let elapsed = started.elapsed();
    println!(
        "runner, all projections: {} events in {elapsed:.3?}: {:.0} events/s",
        CALLS * 4,
        (CALLS * 4) as f64 / elapsed.as_secs_f64()
    );
}
