//! The behaviour every [`EventLog`] backend must show. Each backend's integration tests call
//! these functions with a fresh log, so SQLite and Kafka run the same test code.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::audit::Verifier;
use crate::log::{Cursor, EventLog, ExpectedVersion, Filter, LogError, NewEvent};
use crate::payload::{Payload, VerbStarted};
use crate::sid::{AccountSid, CallSid};

/// A small call event whose `index` and `verb` let tests check order and origin.
pub fn marker(account: &AccountSid, index: u32, writer: &str) -> NewEvent {
    NewEvent::new(
        account.as_str(),
        VerbStarted {
            index,
            verb: writer.to_owned(),
        },
    )
}

fn marker_of(payload: &Payload) -> (u32, String) {
    match payload {
        Payload::VerbStarted(v) => (v.index, v.verb.clone()),
        other => panic!("unexpected payload {other:?}"),
    }
}

/// Appended events come back from `read_stream` and `read_all` intact, in order, chained.
pub async fn append_read_round_trip(log: Arc<dyn EventLog>) {
    let account = AccountSid::generate();
    let call = CallSid::generate();
    let start = log.head().await.unwrap();
    let appended = log
        .append(
            call.as_str(),
            ExpectedVersion::NoStream,
            (0..3).map(|i| marker(&account, i, "w")).collect(),
        )
        .await
        .unwrap();
    assert_eq!((appended.first_sequence, appended.last_sequence), (1, 3));
    assert_eq!(appended.positions.len(), 3);
    let more = log
        .append(
            call.as_str(),
            ExpectedVersion::Exact(3),
            vec![marker(&account, 3, "w")],
        )
        .await
        .unwrap();
    assert_eq!((more.first_sequence, more.last_sequence), (4, 4));

    let events = log.read_stream(call.as_str(), 1).await.unwrap();
    assert_eq!(events.len(), 4);
    let mut verifier = Verifier::default();
    for (i, recorded) in events.iter().enumerate() {
        let event = &recorded.event;
        assert_eq!(event.sequence, i as u64 + 1);
        assert_eq!(event.subject, call.as_str());
        assert_eq!(event.accountsid, account.as_str());
        assert_eq!(event.event_type, "dialtone.call.verb.started");
        assert_eq!(
            marker_of(&event.payload().unwrap()),
            (i as u32, "w".to_owned())
        );
        verifier.check(event, None).unwrap();
    }
    let positions: Vec<_> = events.iter().map(|r| r.position.clone()).collect();
    assert_eq!(positions[..3], appended.positions[..]);

    let tail = log.read_stream(call.as_str(), 3).await.unwrap();
    assert_eq!(
        tail.iter().map(|r| r.event.sequence).collect::<Vec<_>>(),
        vec![3, 4]
    );

    let all = log.read_all(&start, 100).await.unwrap();
    let ours: Vec<_> = all
        .iter()
        .filter(|r| r.event.subject == call.as_str())
        .collect();
    assert_eq!(ours.len(), 4);
    for (a, b) in ours.iter().zip(&events) {
        assert_eq!(a.event.to_json(), b.event.to_json());
        assert_eq!(a.position, b.position);
    }
    assert!(log
        .read_stream(CallSid::generate().as_str(), 1)
        .await
        .unwrap()
        .is_empty());
}

/// Appends from concurrent writers to many streams keep each stream's order.
pub async fn per_stream_order(log: Arc<dyn EventLog>) {
    let account = AccountSid::generate();
    let streams: Vec<CallSid> = (0..8).map(|_| CallSid::generate()).collect();
    let mut tasks = Vec::new();
    for (w, stream) in streams.iter().enumerate() {
        let (log, stream, account) = (log.clone(), stream.clone(), account.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..40u32 {
                // Alternate single and double appends so batches mix sizes.
                let events = if i % 2 == 0 {
                    vec![marker(&account, 2 * i, &format!("w{w}"))]
                } else {
                    vec![
                        marker(&account, 2 * i, &format!("w{w}")),
                        marker(&account, 2 * i + 1, &format!("w{w}")),
                    ]
                };
                log.append(stream.as_str(), ExpectedVersion::Any, events)
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for (w, stream) in streams.iter().enumerate() {
        let events = log.read_stream(stream.as_str(), 1).await.unwrap();
        assert_eq!(events.len(), 60, "stream {w}");
        let mut last_index = None;
        for (i, recorded) in events.iter().enumerate() {
            assert_eq!(recorded.event.sequence, i as u64 + 1);
            let (index, writer) = marker_of(&recorded.event.payload().unwrap());
            assert_eq!(writer, format!("w{w}"));
            assert!(
                last_index.is_none_or(|l| index > l),
                "out of order in stream {w}"
            );
            last_index = Some(index);
        }
    }
}

/// Two writers expecting the same version: exactly one wins; the other learns the actual
/// version from a typed error that names the stream.
pub async fn optimistic_concurrency(log: Arc<dyn EventLog>) {
    let account = AccountSid::generate();
    for round in 0..10 {
        let call = CallSid::generate();
        log.append(
            call.as_str(),
            ExpectedVersion::NoStream,
            vec![marker(&account, 0, "seed")],
        )
        .await
        .unwrap();
        let a = {
            let (log, call, account) = (log.clone(), call.clone(), account.clone());
            tokio::spawn(async move {
                log.append(
                    call.as_str(),
                    ExpectedVersion::Exact(1),
                    vec![marker(&account, 1, "a")],
                )
                .await
            })
        };
        let b = {
            let (log, call, account) = (log.clone(), call.clone(), account.clone());
            tokio::spawn(async move {
                log.append(
                    call.as_str(),
                    ExpectedVersion::Exact(1),
                    vec![marker(&account, 1, "b")],
                )
                .await
            })
        };
        let results = [a.await.unwrap(), b.await.unwrap()];
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: exactly one writer must win");
        let error = results.into_iter().find_map(|r| r.err()).unwrap();
        match error {
            LogError::VersionConflict {
                stream,
                expected,
                actual,
            } => {
                assert_eq!(stream, call.as_str());
                assert_eq!(expected, ExpectedVersion::Exact(1));
                assert_eq!(actual, 2);
            }
            other => panic!("expected a version conflict, got {other}"),
        }
        assert_eq!(log.read_stream(call.as_str(), 1).await.unwrap().len(), 2);
        let conflict = log
            .append(
                call.as_str(),
                ExpectedVersion::NoStream,
                vec![marker(&account, 9, "late")],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(conflict, LogError::VersionConflict { actual: 2, .. }),
            "{conflict}"
        );
        let message = conflict.to_string();
        assert!(
            message.contains(call.as_str())
                && message.contains("no stream")
                && message.contains('2')
        );
    }
}

/// A subscription started while 64 writers append sees every event exactly once, in
/// per-stream order, and then keeps receiving live events.
pub async fn subscribe_during_concurrent_appends(log: Arc<dyn EventLog>) {
    const WRITERS: usize = 64;
    const PER_WRITER: u32 = 40;
    let account = AccountSid::generate();
    let streams: Vec<CallSid> = (0..WRITERS).map(|_| CallSid::generate()).collect();
    let ours: HashSet<String> = streams.iter().map(|s| s.to_string()).collect();
    let start: Cursor = log.head().await.unwrap();

    let mut tasks = Vec::new();
    for (w, stream) in streams.iter().enumerate() {
        let (log, stream, account) = (log.clone(), stream.clone(), account.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                log.append(
                    stream.as_str(),
                    ExpectedVersion::Any,
                    vec![marker(&account, i, &format!("w{w}"))],
                )
                .await
                .unwrap();
            }
        }));
    }
    // Subscribe while the writers are running: part catch-up, part live.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let filter = Filter {
        account: Some(account.to_string()),
        ..Filter::all()
    };
    let mut subscription = log.subscribe(start, filter).await.unwrap();

    let expected = WRITERS * PER_WRITER as usize;
    let mut seen_ids = HashSet::new();
    let mut next_sequence: HashMap<String, u64> = HashMap::new();
    while seen_ids.len() < expected {
        let recorded = tokio::time::timeout(Duration::from_secs(60), subscription.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "subscription stalled after {} of {expected} events",
                    seen_ids.len()
                )
            })
            .expect("subscription ended")
            .unwrap();
        let event = recorded.event;
        assert!(
            ours.contains(&event.subject),
            "filter let through {}",
            event.subject
        );
        assert!(seen_ids.insert(event.id), "duplicate event {}", event.id);
        let next = next_sequence.entry(event.subject.clone()).or_insert(1);
        assert_eq!(event.sequence, *next, "gap or reorder in {}", event.subject);
        *next += 1;
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Live tail: one more event arrives, and nothing else was pending.
    log.append(
        streams[0].as_str(),
        ExpectedVersion::Exact(PER_WRITER as u64),
        vec![marker(&account, 99, "late")],
    )
    .await
    .unwrap();
    let late = tokio::time::timeout(Duration::from_secs(30), subscription.next())
        .await
        .expect("live event not delivered")
        .expect("subscription ended")
        .unwrap();
    assert_eq!(late.event.sequence, PER_WRITER as u64 + 1);
    assert_eq!(late.event.subject, streams[0].as_str());
}

/// `read_stream` of one call among 100,000 events returns exactly its events.
pub async fn read_stream_among_many(log: Arc<dyn EventLog>) {
    const TOTAL: usize = 100_000;
    const BATCH: usize = 100;
    let account = AccountSid::generate();
    let target = CallSid::generate();
    let mut target_count = 0u32;
    let mut written = 0usize;
    let mut round = 0usize;
    while written < TOTAL {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            if written >= TOTAL {
                break;
            }
            let (log, account) = (log.clone(), account.clone());
            let other = CallSid::generate();
            tasks.push(tokio::spawn(async move {
                let events = (0..BATCH as u32)
                    .map(|i| marker(&account, i, "noise"))
                    .collect();
                log.append(other.as_str(), ExpectedVersion::NoStream, events)
                    .await
                    .unwrap();
            }));
            written += BATCH;
        }
        if round.is_multiple_of(25) {
            log.append(
                target.as_str(),
                ExpectedVersion::Any,
                vec![marker(&account, target_count, "target")],
            )
            .await
            .unwrap();
            target_count += 1;
            written += 1;
        }
        for task in tasks {
            task.await.unwrap();
        }
        round += 1;
    }
    let events = log.read_stream(target.as_str(), 1).await.unwrap();
    assert_eq!(events.len(), target_count as usize);
    for (i, recorded) in events.iter().enumerate() {
        assert_eq!(recorded.event.subject, target.as_str());
        assert_eq!(recorded.event.sequence, i as u64 + 1);
        assert_eq!(
            marker_of(&recorded.event.payload().unwrap()),
            (i as u32, "target".to_owned())
        );
    }
}

/// A position token names the cursor it was made from: resuming after an event's token reads
/// exactly the events after it. Tokens of the other backend are refused.
pub async fn position_tokens_resume_exactly(log: Arc<dyn EventLog>) {
    let account = AccountSid::generate();
    let start = log.head().await.unwrap();
    for writer in 0..4u32 {
        let call = CallSid::generate();
        log.append(
            call.as_str(),
            ExpectedVersion::NoStream,
            (0..5)
                .map(|i| marker(&account, i, &format!("w{writer}")))
                .collect(),
        )
        .await
        .unwrap();
    }
    let events: Vec<_> = log
        .read_all(&start, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.accountsid == account.as_str())
        .collect();
    assert_eq!(events.len(), 20);
    let mut cursor = start.clone();
    for (i, recorded) in events.iter().enumerate() {
        cursor.advance(&recorded.position);
        let token = log.position_token(&cursor);
        let parsed = log.parse_position(&token).unwrap();
        let rest: Vec<_> = log
            .read_all(&parsed, 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.event.accountsid == account.as_str())
            .map(|r| r.event.id)
            .collect();
        let expected: HashSet<_> = events[i + 1..].iter().map(|r| r.event.id).collect();
        assert_eq!(rest.len(), expected.len(), "after event {i} ({token})");
        assert_eq!(rest.into_iter().collect::<HashSet<_>>(), expected);
    }
    assert_eq!(
        log.parse_position(crate::position::START_TOKEN).unwrap(),
        Cursor::start()
    );
    let foreign = match log.backend() {
        "sqlite" => "kAQI",
        _ => "1234",
    };
    assert!(matches!(
        log.parse_position(foreign),
        Err(crate::position::PositionError::OtherBackend { .. })
    ));
    assert!(log.parse_position("not a position").is_err());
}

/// Generates one `#[tokio::test]` per conformance case, given an async expression that
/// opens a fresh log (`Arc<dyn EventLog>`).
#[macro_export]
macro_rules! conformance_tests {
    ($open:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn append_read_round_trip() {
            $crate::conformance::append_read_round_trip($open).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn per_stream_order() {
            $crate::conformance::per_stream_order($open).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn optimistic_concurrency() {
            $crate::conformance::optimistic_concurrency($open).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn subscribe_during_concurrent_appends() {
            $crate::conformance::subscribe_during_concurrent_appends($open).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn position_tokens_resume_exactly() {
            $crate::conformance::position_tokens_resume_exactly($open).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn read_stream_among_many() {
            $crate::conformance::read_stream_among_many($open).await;
        }
    };
}
