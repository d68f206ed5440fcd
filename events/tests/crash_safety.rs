//! SIGKILL crash safety of the SQLite log: a child process appends continuously and prints
//! every acknowledged append; the parent kills it at a random moment, reopens the store and
//! checks that every acknowledged event is there, intact, and that no batch is partly visible.
//!
//! The child is this same test binary, re-run with `DIALTONE_CRASH_CHILD` set.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dialtone_events::audit::VerifyReport;
use dialtone_events::payload::{Payload, VerbStarted};
use dialtone_events::sid::{AccountSid, CallSid};
use dialtone_events::sqlite::SqliteLog;
use dialtone_events::{EventLog, ExpectedVersion, NewEvent};

const CHILD_ENV: &str = "DIALTONE_CRASH_CHILD";
const ROUNDS: usize = 20;

/// Child mode: append batches of 1–5 events from 16 concurrent writers until killed.
/// Each event's payload names its batch and the batch size, so the parent can tell a
/// partial batch from a whole one. Prints `ack <stream> <first_seq> <last_seq> <batch>`.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let log = Arc::new(SqliteLog::open(&path, "crash-child").unwrap());
        let account = AccountSid::generate();
        // Batch names must be unique across rounds, which all write to the same store.
        let run: u32 = rand::random();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for writer in 0..16u32 {
            let (log, account, tx) = (log.clone(), account.clone(), tx.clone());
            tokio::spawn(async move {
                let mut n = 0u32;
                loop {
                    let stream = CallSid::generate();
                    for _ in 0..5 {
                        n += 1;
                        let size = 1 + (n * 7 + writer) % 5;
                        let batch = format!("{run}-{writer}-{n}-{size}");
                        let events = (0..size)
                            .map(|i| {
                                NewEvent::new(
                                    account.as_str(),
                                    VerbStarted {
                                        index: i,
                                        verb: batch.clone(),
                                    },
                                )
                            })
                            .collect();
                        let appended = log
                            .append(stream.as_str(), ExpectedVersion::Any, events)
                            .await
                            .unwrap();
                        let _ = tx.send(format!(
                            "ack {stream} {} {} {batch}",
                            appended.first_sequence, appended.last_sequence
                        ));
                    }
                }
            });
        }
        let stdout = std::io::stdout();
        while let Some(line) = rx.recv().await {
            let mut out = stdout.lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    });
}

struct Ack {
    stream: String,
    first: u64,
    last: u64,
    batch: String,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.split_whitespace();
    if parts.next()? != "ack" {
        return None;
    }
    Some(Ack {
        stream: parts.next()?.to_owned(),
        first: parts.next()?.parse().ok()?,
        last: parts.next()?.parse().ok()?,
        batch: parts.next()?.to_owned(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let mut total_acked = 0usize;
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Read acks on a thread; kill after a random time once appends are flowing.
        let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut acks = Vec::new();
        // Skip the test harness's own lines ("running 1 test") up to the first ack.
        let deadline = Instant::now() + Duration::from_secs(60);
        while acks.is_empty() {
            assert!(
                Instant::now() < deadline,
                "child never acknowledged an append"
            );
            if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(100)) {
                acks.extend(parse_ack(&line));
            }
        }
        let kill_after = Duration::from_millis(rand::random_range(10..400));
        let start = Instant::now();
        while start.elapsed() < kill_after {
            if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(5)) {
                acks.extend(parse_ack(&line));
            }
        }
        // SAFETY-free SIGKILL through the kill(1) program: no libc dependency needed.
        let status = Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        child.wait().unwrap();
        // Acks printed before the kill are acknowledged appends: collect every one.
        acks.extend(lines_rx.iter().filter_map(|l| parse_ack(&l)));
        reader.join().unwrap();
        assert!(!acks.is_empty());
        total_acked += acks.len();

        let log = SqliteLog::open(&path, "checker").unwrap();
        let mut by_stream: HashMap<String, Vec<dialtone_events::RecordedEvent>> = HashMap::new();
        for ack in &acks {
            let events = match by_stream.get(&ack.stream) {
                Some(events) => events,
                None => {
                    let events = log.read_stream(&ack.stream, 1).await.unwrap();
                    by_stream.entry(ack.stream.clone()).or_insert(events)
                }
            };
            for sequence in ack.first..=ack.last {
                let event = events
                    .iter()
                    .find(|r| r.event.sequence == sequence)
                    .unwrap_or_else(|| {
                        panic!(
                            "round {round}: acknowledged {} #{sequence} lost",
                            ack.stream
                        )
                    });
                match event.event.payload().unwrap() {
                    Payload::VerbStarted(v) => {
                        assert_eq!(v.verb, ack.batch, "round {round}: wrong event")
                    }
                    other => panic!("round {round}: unexpected payload {other:?}"),
                }
            }
        }
        // No partial batch: every batch visible in the store is whole.
        let mut cursor = dialtone_events::Cursor::start();
        let mut batches: HashMap<String, (u32, u32)> = HashMap::new();
        loop {
            let page = log.read_all(&cursor, 10_000).await.unwrap();
            if page.is_empty() {
                break;
            }
            for recorded in page {
                cursor.advance(&recorded.position);
                if let Payload::VerbStarted(v) = recorded.event.payload().unwrap() {
                    let size: u32 = v.verb.rsplit('-').next().unwrap().parse().unwrap();
                    let entry = batches.entry(v.verb).or_insert((0, size));
                    entry.0 += 1;
                }
            }
        }
        for (batch, (seen, size)) in &batches {
            assert_eq!(seen, size, "round {round}: batch {batch} is partly visible");
        }
        let report = log.verify(|_| {}).unwrap();
        assert!(
            matches!(report, VerifyReport::Ok { .. }),
            "round {round}: {report:?}"
        );
        log.close();
    }
    eprintln!("{ROUNDS} rounds, {total_acked} acknowledged appends checked");
}
