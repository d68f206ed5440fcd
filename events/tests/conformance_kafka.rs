//! The log conformance suite, and Kafka-specific behaviour, against a running broker.
//!
//! Start one with `infra/kafka.sh start`. The broker is `DIALTONE_KAFKA_BROKERS` (default
//! 127.0.0.1:9092). Without a broker these tests fail, so that a missing broker cannot hide
//! a regression; `DIALTONE_SKIP_KAFKA=1` turns them into no-ops that say so.
//!
//! Each test uses topics of its own (a unique prefix), so tests never see each other's events.
#![cfg(feature = "kafka")]

use std::collections::{HashMap, HashSet};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dialtone_events::audit::Verifier;
use dialtone_events::conformance::marker;
use dialtone_events::kafka::{KafkaConfig, KafkaLog, CONTENT_TYPE, TYPE_HEADER};
use dialtone_events::payload::VerbStarted;
use dialtone_events::sid::{AccountSid, CallSid, ConferenceSid, PhoneNumberSid, RateSid};
use dialtone_events::{Cursor, EventLog, ExpectedVersion, LogError, NewEvent};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;

fn brokers() -> String {
    std::env::var("DIALTONE_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn skipped() -> bool {
    if std::env::var("DIALTONE_SKIP_KAFKA").is_ok_and(|v| v == "1") {
        eprintln!("DIALTONE_SKIP_KAFKA=1: this Kafka test checks nothing");
        return true;
    }
    false
}

/// Fails the test with instructions when no broker answers.
fn require_broker() {
    let brokers = brokers();
    let reachable = brokers.split(',').any(|broker| {
        broker
            .trim()
            .to_socket_addrs()
            .ok()
            .into_iter()
            .flatten()
            .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
    });
    assert!(
        reachable,
        "no Kafka broker answers at {brokers} (DIALTONE_KAFKA_BROKERS): start one with \
         `infra/kafka.sh start`, or set DIALTONE_SKIP_KAFKA=1 to skip the Kafka tests"
    );
}

fn unique_prefix() -> String {
    format!("dialtone-test-{}", uuid::Uuid::now_v7().simple())
}

fn config(prefix: &str, node: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: brokers(),
        topic_prefix: prefix.to_owned(),
        partitions: PARTITIONS,
        node: node.to_owned(),
        ..KafkaConfig::default()
    }
}

async fn open_on(prefix: &str, node: &str) -> KafkaLog {
    require_broker();
    KafkaLog::open(config(prefix, node))
        .await
        .unwrap_or_else(|e| panic!("cannot open the Kafka log at {}: {e}", brokers()))
}

/// A log on fresh topics, or `None` when Kafka tests are skipped.
async fn fresh() -> Option<Arc<dyn EventLog>> {
    if skipped() {
        return None;
    }
    Some(Arc::new(open_on(&unique_prefix(), "test-node").await))
}

macro_rules! fresh_log {
    () => {
        match fresh().await {
            Some(log) => log,
            None => return,
        }
    };
}

dialtone_events::conformance_tests!(fresh_log!());

/// A node restarted on the same topics knows every stream's head: it continues chains with
/// `Exact(n)` and refuses `NoStream` on streams that exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_node_sees_existing_heads() {
    if skipped() {
        return;
    }
    let prefix = unique_prefix();
    let account = AccountSid::generate();
    let call = CallSid::generate();
    let number = PhoneNumberSid::generate();
    let rate = RateSid::generate();
    let conference = ConferenceSid::generate();
    let others = [number.as_str(), rate.as_str(), conference.as_str()];
    let before = {
        let first = open_on(&prefix, "node-a").await;
        first
            .append(
                call.as_str(),
                ExpectedVersion::NoStream,
                (0..3).map(|i| marker(&account, i, "a")).collect(),
            )
            .await
            .unwrap();
        for stream in others.iter().chain([&account.as_str()]) {
            first
                .append(
                    stream,
                    ExpectedVersion::NoStream,
                    vec![marker(&account, 0, "a")],
                )
                .await
                .unwrap();
        }
        // Noise in the call's partition, written after the call's events.
        for i in 0..20 {
            first
                .append(
                    CallSid::generate().as_str(),
                    ExpectedVersion::NoStream,
                    vec![marker(&account, i, "noise")],
                )
                .await
                .unwrap();
        }
        first.head().await.unwrap()
    };

    let second = open_on(&prefix, "node-b").await;
    assert_eq!(second.head().await.unwrap(), before);
    let conflict = second
        .append(
            call.as_str(),
            ExpectedVersion::NoStream,
            vec![marker(&account, 9, "b")],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(conflict, LogError::VersionConflict { actual: 3, .. }),
        "{conflict}"
    );
    let stale = second
        .append(
            call.as_str(),
            ExpectedVersion::Exact(2),
            vec![marker(&account, 9, "b")],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(stale, LogError::VersionConflict { actual: 3, .. }),
        "{stale}"
    );
    let appended = second
        .append(
            call.as_str(),
            ExpectedVersion::Exact(3),
            vec![marker(&account, 3, "b")],
        )
        .await
        .unwrap();
    assert_eq!((appended.first_sequence, appended.last_sequence), (4, 4));
    for stream in others.iter().chain([&account.as_str()]) {
        let appended = second
            .append(
                stream,
                ExpectedVersion::Exact(1),
                vec![marker(&account, 1, "b")],
            )
            .await
            .unwrap();
        assert_eq!(appended.last_sequence, 2, "{stream}");
        let conflict = second
            .append(
                stream,
                ExpectedVersion::NoStream,
                vec![marker(&account, 1, "b")],
            )
            .await
            .unwrap_err();
        assert!(matches!(
            conflict,
            LogError::VersionConflict { actual: 2, .. }
        ));
    }

    // The chain continues across the restart: one stream, two writers in turn.
    let events = second.read_stream(call.as_str(), 1).await.unwrap();
    assert_eq!(events.len(), 4);
    let mut verifier = Verifier::default();
    for recorded in &events {
        verifier.check(&recorded.event, None).unwrap();
    }
    assert_eq!(events[2].event.source, "dialtone://node-a");
    assert_eq!(events[3].event.source, "dialtone://node-b");
    assert_eq!(
        events[3].position.partition,
        second.partition_of(call.as_str()).unwrap()
    );
}

/// Paging through the whole log with `read_all` and a small limit returns every event
/// exactly once, with its stream's events in order, and ends at `head`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_all_pages_through_every_partition() {
    let log = fresh_log!();
    let account = AccountSid::generate();
    let mut expected = 0;
    let streams: Vec<String> = (0..12)
        .map(|i| match i % 3 {
            0 => CallSid::generate().to_string(),
            1 => PhoneNumberSid::generate().to_string(),
            _ => AccountSid::generate().to_string(),
        })
        .collect();
    for round in 0..5u32 {
        for stream in &streams {
            let events: Vec<NewEvent> = (0..=round % 3)
                .map(|i| marker(&account, round * 10 + i, "p"))
                .collect();
            expected += events.len();
            log.append(stream, ExpectedVersion::Any, events)
                .await
                .unwrap();
        }
    }
    let mut cursor = Cursor::start();
    let mut seen = HashSet::new();
    let mut next_sequence: HashMap<String, u64> = HashMap::new();
    let mut pages = 0;
    loop {
        let page = log.read_all(&cursor, 7).await.unwrap();
        assert!(page.len() <= 7);
        if page.is_empty() {
            break;
        }
        pages += 1;
        for recorded in page {
            assert!(
                !cursor.has_passed(&recorded.position),
                "{} read twice",
                recorded.position
            );
            cursor.advance(&recorded.position);
            assert!(seen.insert(recorded.event.id));
            let next = next_sequence
                .entry(recorded.event.subject.clone())
                .or_insert(1);
            assert_eq!(
                recorded.event.sequence, *next,
                "order of {}",
                recorded.event.subject
            );
            *next += 1;
        }
    }
    assert_eq!(seen.len(), expected);
    assert!(pages >= expected / 7);
    let head = log.head().await.unwrap();
    for (partition, end) in &head.0 {
        assert_eq!(cursor.next_offset(partition), *end, "{partition}");
    }
}

/// Records are plain CloudEvents any Kafka client can read: key = subject, value = the
/// canonical JSON (whose hash the next event's prevhash holds), structured-mode headers, and
/// the partition Kafka's default partitioner would pick for the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_are_plain_cloudevents() {
    if skipped() {
        return;
    }
    let prefix = unique_prefix();
    let log = open_on(&prefix, "test-node").await;
    let account = AccountSid::generate();
    let call = CallSid::generate();
    let appended = log
        .append(
            call.as_str(),
            ExpectedVersion::NoStream,
            (0..2).map(|i| marker(&account, i, "raw")).collect(),
        )
        .await
        .unwrap();
    let ours = log.read_stream(call.as_str(), 1).await.unwrap();
    let position = &appended.positions[0];
    let (topic, partition) = position.partition.rsplit_once('/').unwrap();
    assert_eq!(topic, format!("{prefix}.calls"));
    let partition: i32 = partition.parse().unwrap();
    assert_eq!(
        partition,
        dialtone_events::kafka::default_partition(call.as_str().as_bytes(), PARTITIONS)
    );

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", "dialtone-test-raw")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(position.offset as i64))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut raw = Vec::new();
    while raw.len() < 2 {
        assert!(Instant::now() < deadline, "raw records not read");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap().detach();
            raw.push(message);
        }
    }
    for (message, recorded) in raw.iter().zip(&ours) {
        assert_eq!(message.key(), Some(call.as_str().as_bytes()));
        assert_eq!(message.payload(), Some(recorded.event.to_json().as_bytes()));
        let headers = message.headers().expect("headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(header("content-type").as_deref(), Some(CONTENT_TYPE));
        assert_eq!(
            header(TYPE_HEADER).as_deref(),
            Some("dialtone.call.verb.started")
        );
    }
    // The next event's prevhash is the hash of the first as read raw from the topic.
    let first = dialtone_events::Event::from_json(raw[0].payload().unwrap()).unwrap();
    assert_eq!(ours[1].event.prevhash, first.hash());
}

/// Append throughput with many concurrent writers and ~300-byte payloads. Not a check:
/// run with `--ignored --nocapture` to measure. `WRITERS` (256), `APPENDS` per writer (50),
/// `BATCH` events per append (1) and `LINGER_MS` (5) tune it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn append_throughput() {
    if skipped() {
        return;
    }
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (writers, appends, batch) = (env("WRITERS", 256), env("APPENDS", 50), env("BATCH", 1));
    let mut config = config(&unique_prefix(), "bench-node");
    config.linger = Duration::from_millis(env("LINGER_MS", 5) as u64);
    require_broker();
    let log: Arc<dyn EventLog> = Arc::new(KafkaLog::open(config).await.unwrap());
    let account = AccountSid::generate();
    let verb = "x".repeat(280); // data = {"index":N,"verb":"xxx…"} ≈ 300 bytes
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (log, account, verb) = (log.clone(), account.clone(), verb.clone());
        tasks.push(tokio::spawn(async move {
            let call = CallSid::generate();
            let mut latencies = Vec::with_capacity(appends);
            for i in 0..appends {
                let events = (0..batch)
                    .map(|j| {
                        NewEvent::new(
                            account.as_str(),
                            VerbStarted {
                                index: (i * batch + j) as u32,
                                verb: verb.clone(),
                            },
                        )
                    })
                    .collect();
                let sent = Instant::now();
                log.append(
                    call.as_str(),
                    ExpectedVersion::Exact((i * batch) as u64),
                    events,
                )
                .await
                .unwrap();
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let percentile = |p: usize| latencies[(latencies.len() - 1) * p / 100];
    let total = writers * appends * batch;
    eprintln!(
        "{total} events in {} appends of {batch} by {writers} writers in {elapsed:.2?}: \
         {:.0} events/s; append latency p50 {:.1?} p99 {:.1?}",
        writers * appends,
        total as f64 / elapsed.as_secs_f64(),
        percentile(50),
        percentile(99),
    );
}

/// Without a broker, `open` fails within its request timeout and says where it looked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_without_a_broker_fails_with_context() {
    // Nothing listens on a port we just bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = KafkaConfig {
        brokers: format!("127.0.0.1:{port}"),
        topic_prefix: unique_prefix(),
        request_timeout: Duration::from_secs(2),
        ..KafkaConfig::default()
    };
    let started = Instant::now();
    let error = match KafkaLog::open(config).await {
        Ok(_) => panic!("opened a log with no broker"),
        Err(error) => error,
    };
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, LogError::Kafka { .. }), "{error}");
    assert!(error.to_string().contains(&port.to_string()), "{error}");
}
