//! The status-callback outbox against a real SQLite event log and a real projection runner.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dialtone_events::payload::{
    CallAnswered, CallApplication, CallCompleted, CallInitiated, CallRejected, CallRinging,
    CallStatus, CallbackDelivered, CallbackFailed, Direction, HttpMethod, RecordingCompleted,
    RecordingStarted,
};
use dialtone_events::sid::{AccountSid, CallSid, RecordingSid};
use dialtone_events::sqlite::SqliteLog;
use dialtone_events::{EventLog, ExpectedVersion, NewEvent, Payload};
use dialtone_projections::callbacks::{
    self, idempotency_token, CallbackEvent, DeliveryState, OutboxRow,
};
use dialtone_projections::*;
use rusqlite::Connection;
use time::macros::datetime;
use time::OffsetDateTime;

const T0: OffsetDateTime = datetime!(2025-03-10 12:00:00 UTC);

struct Fixture {
    _dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    db: PathBuf,
    runner: Option<ProjectionRunner>,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> =
            Arc::new(SqliteLog::open(dir.path().join("events.db"), "node-1").unwrap());
        let db = dir.path().join(READ_MODELS_FILE);
        let runner = ProjectionRunner::start(
            log.clone(),
            &db,
            standard_projections(
                &AccountDirectory::default(),
                &NumberDirectory::default(),
                RateTable::default(),
            ),
            RunnerConfig {
                max_batch: 4096,
                retry_backoff: Duration::from_millis(20),
                ..RunnerConfig::default()
            },
        )
        .await
        .unwrap();
        Fixture {
            _dir: dir,
            log,
            db,
            runner: Some(runner),
        }
    }

    async fn append(&self, call: &CallSid, account: &AccountSid, events: Vec<(Payload, i64)>) {
        let events = events
            .into_iter()
            .map(|(p, ms)| {
                NewEvent::new(account.as_str(), p).at(T0 + time::Duration::milliseconds(ms))
            })
            .collect();
        let appended = self
            .log
            .append(call.as_str(), ExpectedVersion::Any, events)
            .await
            .unwrap();
        let handle = self.runner.as_ref().unwrap().handle();
        tokio::time::timeout(
            Duration::from_secs(10),
            handle.wait_for(&appended.positions),
        )
        .await
        .expect("projections applied the append in time")
        .unwrap();
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, ProjectionError>) -> T {
        ReadModels::new(&self.db).read_blocking(f).unwrap()
    }

    fn outbox(&self, call: &CallSid) -> Vec<OutboxRow> {
        let sid = call.to_string();
        self.read(move |c| callbacks::outbox_of_call(c, &sid))
    }
}

fn initiated(owner: &str, url: Option<&str>, events: &[&str]) -> Payload {
    CallInitiated {
        direction: Direction::Inbound,
        from: "+15551230000".into(),
        to: "+15559870000".into(),
        owner_node: owner.into(),
        sip_call_id: None,
        source_addr: None,
        phone_number_sid: None,
        parent_call_sid: None,
        forwarded_from: Some("+15550001111".into()),
        application: CallApplication {
            url: Some("https://app.example/voice".into()),
            status_callback: url.map(str::to_owned),
            status_callback_method: HttpMethod::Get,
            status_callback_events: events.iter().map(|e| e.to_string()).collect(),
            ..CallApplication::default()
        },
    }
    .into()
}

fn completed(status: CallStatus, answered_ms: u64) -> Payload {
    CallCompleted {
        status,
        duration_s: answered_ms / 1000,
        answered_ms,
        answered_at: None,
        hangup_by: "caller".into(),
        sip_code: None,
    }
    .into()
}

fn param<'a>(row: &'a OutboxRow, name: &str) -> Option<&'a str> {
    row.params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn full_call() -> Vec<(Payload, i64)> {
    vec![
        (
            initiated(
                "node-1",
                Some("https://app.example/status"),
                &["initiated", "ringing", "answered", "completed"],
            ),
            0,
        ),
        (CallRinging::default().into(), 100),
        (CallAnswered::default().into(), 2_000),
        (completed(CallStatus::Completed, 75_000), 77_000),
    ]
}

#[tokio::test]
async fn a_call_with_all_events_fills_the_outbox_in_order() {
    let fx = Fixture::new().await;
    let account = AccountSid::generate();
    let call = CallSid::generate();
    fx.append(&call, &account, full_call()).await;

    let rows = fx.outbox(&call);
    let events: Vec<CallbackEvent> = rows.iter().map(|r| r.event).collect();
    assert_eq!(events, CallbackEvent::PROGRESS.to_vec());
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.sequence_number, i as u32);
        assert_eq!(
            row.for_sequence,
            i as u64 + 1,
            "caused by the i-th call event"
        );
        assert_eq!(row.state, DeliveryState::Pending);
        assert_eq!(row.url, "https://app.example/status");
        assert_eq!(row.method, HttpMethod::Get);
        assert_eq!(row.owner_node, "node-1");
        assert_eq!(row.account_sid, account.as_str());
        assert_eq!(
            row.idempotency_token,
            idempotency_token(call.as_str(), i as u32)
        );
        assert_eq!(param(row, "SequenceNumber"), Some(i.to_string().as_str()));
        assert_eq!(param(row, "CallbackSource"), Some("call-progress-events"));
        assert_eq!(param(row, "ForwardedFrom"), Some("+15550001111"));
        assert_eq!(param(row, "CallSid"), Some(call.as_str()));
    }
    let statuses: Vec<_> = rows
        .iter()
        .map(|r| param(r, "CallStatus").unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"]
    );
    assert_eq!(param(&rows[3], "CallDuration"), Some("75"));
    assert_eq!(param(&rows[3], "Duration"), Some("2"));
    assert_eq!(
        param(&rows[3], "Timestamp"),
        Some("Mon, 10 Mar 2025 12:01:17 +0000")
    );
    assert_eq!(rows[3].event_time, T0 + time::Duration::seconds(77));

    // The deliverer's view: pending rows of its node, in order, after an id.
    let pending = fx.read(|c| callbacks::pending_for_node(c, "node-1", 0, 100));
    assert_eq!(pending, rows);
    let after_first = fx.read(|c| callbacks::pending_for_node(c, "node-1", rows[0].id, 100));
    assert_eq!(after_first.len(), 3);
    assert!(fx
        .read(|c| callbacks::pending_for_node(c, "node-2", 0, 100))
        .is_empty());
}

#[tokio::test]
async fn outcome_events_mark_rows_done_and_rebuild_is_identical() {
    let mut fx = Fixture::new().await;
    let account = AccountSid::generate();
    let call = CallSid::generate();
    fx.append(&call, &account, full_call()).await;
    let rows = fx.outbox(&call);
    fx.append(
        &call,
        &account,
        vec![
            (
                CallbackDelivered {
                    event: "initiated".into(),
                    url: rows[0].url.clone(),
                    sequence_number: 0,
                    status: 204,
                    attempts: 3,
                    for_sequence: rows[0].for_sequence,
                }
                .into(),
                80_000,
            ),
            (
                CallbackFailed {
                    event: "ringing".into(),
                    url: rows[1].url.clone(),
                    sequence_number: 1,
                    attempts: 6,
                    error: "HTTP 500".into(),
                    for_sequence: rows[1].for_sequence,
                }
                .into(),
                81_000,
            ),
            // A recording callback outcome refers to no status-callback row.
            (
                CallbackDelivered {
                    event: "recording".into(),
                    url: "https://app.example/rec".into(),
                    sequence_number: 0,
                    status: 200,
                    attempts: 1,
                    for_sequence: rows[2].for_sequence,
                }
                .into(),
                82_000,
            ),
        ],
    )
    .await;
    let after = fx.outbox(&call);
    assert_eq!(after[0].state, DeliveryState::Delivered);
    assert_eq!(
        (after[0].attempts, after[0].http_status),
        (Some(3), Some(204))
    );
    assert_eq!(after[1].state, DeliveryState::Failed);
    assert_eq!(after[1].error.as_deref(), Some("HTTP 500"));
    assert_eq!(after[2].state, DeliveryState::Pending);
    assert_eq!(after[3].state, DeliveryState::Pending);
    let pending = fx.read(|c| callbacks::pending_for_node(c, "node-1", 0, 100));
    assert_eq!(
        pending
            .iter()
            .map(|r| r.sequence_number)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(fx.read(|c| callbacks::count_pending(c, "node-1")), 2);

    // Dropped and replayed from the log, the outbox comes out identical.
    fx.runner.take().unwrap().shutdown().await;
    let report = rebuild(
        fx.log.as_ref(),
        &fx.db,
        Box::new(CallbacksProjection::new()),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.events, 7);
    assert_eq!(fx.outbox(&call), after);
    // The tracker of an ended call is gone; its rows carry everything.
    let trackers: i64 = fx.read(|c| {
        c.query_row("SELECT COUNT(*) FROM callback_calls", [], |r| r.get(0))
            .map_err(|source| ProjectionError::Sqlite {
                context: "count",
                source,
            })
    });
    assert_eq!(trackers, 0);
}

#[tokio::test]
async fn only_subscribed_calls_and_events_produce_rows() {
    let fx = Fixture::new().await;
    let account = AccountSid::generate();

    // No status callback: nothing.
    let silent = CallSid::generate();
    let mut events = full_call();
    events[0].0 = initiated("node-1", None, &["initiated"]);
    fx.append(&silent, &account, events).await;
    assert!(fx.outbox(&silent).is_empty());

    // No events named: completed only, with sequence number 0.
    let default = CallSid::generate();
    let mut events = full_call();
    events[0].0 = initiated("node-2", Some("https://app.example/s"), &[]);
    fx.append(&default, &account, events).await;
    let rows = fx.outbox(&default);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].event, rows[0].sequence_number),
        (CallbackEvent::Completed, 0)
    );
    assert_eq!(rows[0].owner_node, "node-2");

    // A busy call split over several appends (trackers persist between batches).
    let busy = CallSid::generate();
    fx.append(
        &busy,
        &account,
        vec![(
            initiated(
                "node-1",
                Some("https://app.example/s"),
                &["ringing completed"],
            ),
            0,
        )],
    )
    .await;
    fx.append(&busy, &account, vec![(CallRinging::default().into(), 10)])
        .await;
    fx.append(
        &busy,
        &account,
        vec![
            (
                CallRinging {
                    sip_code: Some(183),
                }
                .into(),
                20,
            ),
            (
                CallRejected {
                    reason: "busy".into(),
                    sip_code: 486,
                }
                .into(),
                30,
            ),
            (completed(CallStatus::Busy, 0), 40),
            (CallAnswered::default().into(), 50),
        ],
    )
    .await;
    let rows = fx.outbox(&busy);
    assert_eq!(
        rows.iter().map(|r| r.event).collect::<Vec<_>>(),
        [CallbackEvent::Ringing, CallbackEvent::Completed]
    );
    assert_eq!(param(&rows[1], "CallStatus"), Some("busy"));
    assert_eq!(param(&rows[1], "SipResponseCode"), Some("486"));
    assert_eq!(param(&rows[1], "CallDuration"), Some("0"));
    assert_eq!(rows[1].sequence_number, 1);
}

fn recording_started(
    recording: &RecordingSid,
    source: &str,
    callback: Option<&str>,
    events: &[&str],
) -> Payload {
    RecordingStarted {
        url: Some(format!(
            "https://dialtone.example/2010-04-01/Accounts/AC/Recordings/{recording}"
        )),
        track: (source != "RecordVerb").then(|| "both".to_owned()),
        status_callback: callback.map(str::to_owned),
        status_callback_method: HttpMethod::Post,
        status_callback_events: events.iter().map(|e| e.to_string()).collect(),
        ..RecordingStarted::new(recording.clone(), source, 1)
    }
    .into()
}

fn recording_completed(
    recording: &RecordingSid,
    source: &str,
    status: &str,
    duration_ms: u64,
    error_code: Option<u32>,
) -> Payload {
    RecordingCompleted {
        recording_sid: recording.clone(),
        status: status.into(),
        duration_ms,
        path: format!("recordings/{recording}.wav"),
        channels: 1,
        source: source.into(),
        digits: None,
        error_code,
    }
    .into()
}

fn count(fx: &Fixture, table: &'static str) -> i64 {
    fx.read(move |c| {
        c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .map_err(|source| ProjectionError::Sqlite {
                context: "count",
                source,
            })
    })
}

#[tokio::test]
async fn recording_callbacks_join_the_calls_order_and_outcomes_match_them() {
    let mut fx = Fixture::new().await;
    let account = AccountSid::generate();
    let call = CallSid::generate();
    let recording = RecordingSid::generate();
    fx.append(
        &call,
        &account,
        vec![
            (
                initiated(
                    "node-1",
                    Some("https://app.example/status"),
                    &["initiated completed"],
                ),
                0,
            ),
            (CallAnswered::default().into(), 1_000),
            (
                recording_started(
                    &recording,
                    "RecordVerb",
                    Some("https://app.example/rec"),
                    &["in-progress", "completed"],
                ),
                2_000,
            ),
            (
                recording_completed(&recording, "RecordVerb", "completed", 4_200, None),
                6_500,
            ),
            (completed(CallStatus::Completed, 9_000), 10_000),
        ],
    )
    .await;
    let rows = fx.outbox(&call);
    assert_eq!(
        rows.iter().map(|r| r.event).collect::<Vec<_>>(),
        [
            CallbackEvent::Initiated,
            CallbackEvent::RecordingInProgress,
            CallbackEvent::RecordingCompleted,
            CallbackEvent::Completed
        ]
    );
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            row.sequence_number, i as u32,
            "one order over all callbacks"
        );
        assert_eq!(
            row.idempotency_token,
            idempotency_token(call.as_str(), i as u32)
        );
        assert_eq!(row.owner_node, "node-1");
        assert_eq!(row.account_sid, account.as_str());
    }
    assert_eq!(
        rows.iter().map(|r| r.for_sequence).collect::<Vec<_>>(),
        [1, 3, 4, 5]
    );
    // Each row goes to its own URL with its own method.
    assert_eq!(
        rows.iter()
            .map(|r| (r.url.as_str(), r.method))
            .collect::<Vec<_>>(),
        [
            ("https://app.example/status", HttpMethod::Get),
            ("https://app.example/rec", HttpMethod::Post),
            ("https://app.example/rec", HttpMethod::Post),
            ("https://app.example/status", HttpMethod::Get),
        ]
    );
    // Call progress keeps its own consecutive SequenceNumber.
    assert_eq!(param(&rows[0], "SequenceNumber"), Some("0"));
    assert_eq!(param(&rows[3], "SequenceNumber"), Some("1"));
    let done = &rows[2];
    assert_eq!(param(done, "RecordingStatus"), Some("completed"));
    assert_eq!(param(done, "RecordingDuration"), Some("5"));
    assert_eq!(param(done, "RecordingSid"), Some(recording.as_str()));
    assert_eq!(
        param(done, "RecordingUrl").map(str::to_owned),
        Some(format!(
            "https://dialtone.example/2010-04-01/Accounts/AC/Recordings/{recording}"
        ))
    );
    assert_eq!(
        param(done, "RecordingStartTime"),
        Some("Mon, 10 Mar 2025 12:00:02 +0000")
    );
    assert_eq!(param(done, "RecordingSource"), Some("RecordVerb"));
    assert_eq!(param(done, "RecordingTrack"), None);
    assert_eq!(
        param(done, "StatusCallbackEvent"),
        Some("recording-completed")
    );
    assert_eq!(param(done, "SequenceNumber"), None);
    assert_eq!(count(&fx, "callback_recordings"), 0, "completed: forgotten");

    // The deliverer's outcome events name the outbox event; each marks its own row only.
    fx.append(
        &call,
        &account,
        vec![
            (
                CallbackDelivered {
                    event: "recording-in-progress".into(),
                    url: rows[1].url.clone(),
                    sequence_number: 1,
                    status: 200,
                    attempts: 1,
                    for_sequence: rows[1].for_sequence,
                }
                .into(),
                11_000,
            ),
            (
                CallbackFailed {
                    event: "recording-completed".into(),
                    url: rows[2].url.clone(),
                    sequence_number: 2,
                    attempts: 6,
                    error: "HTTP 503".into(),
                    for_sequence: rows[2].for_sequence,
                }
                .into(),
                12_000,
            ),
        ],
    )
    .await;
    let after = fx.outbox(&call);
    assert_eq!(
        after.iter().map(|r| r.state).collect::<Vec<_>>(),
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
            DeliveryState::Pending
        ]
    );

    // Replayed from the log, the outbox comes out identical.
    fx.runner.take().unwrap().shutdown().await;
    rebuild(
        fx.log.as_ref(),
        &fx.db,
        Box::new(CallbacksProjection::new()),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(fx.outbox(&call), after);
}

#[tokio::test]
async fn recordings_of_calls_without_status_callbacks_still_call_back() {
    let fx = Fixture::new().await;
    let account = AccountSid::generate();
    let call = CallSid::generate();
    let (dialed, absent, unsubscribed) = (
        RecordingSid::generate(),
        RecordingSid::generate(),
        RecordingSid::generate(),
    );
    // The call names another owner in call.initiated, but has no status callback: recording
    // rows go to the node that wrote the recording events (this log's node).
    fx.append(
        &call,
        &account,
        vec![
            (initiated("node-7", None, &[]), 0),
            (CallAnswered::default().into(), 500),
            (
                recording_started(&unsubscribed, "RecordVerb", None, &["in-progress"]),
                600,
            ),
            (
                recording_completed(&unsubscribed, "RecordVerb", "completed", 3_000, None),
                3_600,
            ),
            (
                recording_started(
                    &absent,
                    "RecordVerb",
                    Some("https://app.example/rec-absent"),
                    &["absent completed"],
                ),
                4_000,
            ),
            (
                recording_started(
                    &dialed,
                    "DialVerb",
                    Some("https://app.example/rec-dial"),
                    &[],
                ),
                5_000,
            ),
        ],
    )
    .await;
    assert!(fx.outbox(&call).is_empty(), "nothing selected fired yet");
    assert_eq!(count(&fx, "callback_recordings"), 2);
    assert_eq!(count(&fx, "callback_calls"), 0, "no call tracker was made");

    // The call ends before the dial recording is written: it still calls back.
    fx.append(
        &call,
        &account,
        vec![
            (
                recording_completed(&absent, "RecordVerb", "absent", 800, Some(16102)),
                4_900,
            ),
            (completed(CallStatus::Completed, 9_000), 9_500),
        ],
    )
    .await;
    fx.append(
        &call,
        &account,
        vec![(
            recording_completed(&dialed, "DialVerb", "completed", 4_000, None),
            9_600,
        )],
    )
    .await;
    let rows = fx.outbox(&call);
    assert_eq!(
        rows.iter()
            .map(|r| (r.sequence_number, r.event, r.url.as_str()))
            .collect::<Vec<_>>(),
        [
            (
                0,
                CallbackEvent::RecordingAbsent,
                "https://app.example/rec-absent"
            ),
            (
                1,
                CallbackEvent::RecordingCompleted,
                "https://app.example/rec-dial"
            ),
        ]
    );
    assert!(rows.iter().all(|r| r.owner_node == "node-1"));
    assert_eq!(param(&rows[0], "ErrorCode"), Some("16102"));
    assert_eq!(param(&rows[0], "RecordingSid"), Some(absent.as_str()));
    assert_eq!(param(&rows[1], "RecordingSource"), Some("DialVerb"));
    assert_eq!(param(&rows[1], "RecordingTrack"), Some("both"));
    assert_eq!(param(&rows[1], "RecordingDuration"), Some("4"));
    assert_eq!(param(&rows[1], "ErrorCode"), Some("0"));
    let pending = fx.read(|c| callbacks::pending_for_node(c, "node-1", 0, 100));
    assert_eq!(pending, rows);
    assert_eq!(count(&fx, "callback_recordings"), 0);
    assert_eq!(
        fx.read(callbacks::open_recording_subscriptions),
        0,
        "every subscription ended"
    );
}

#[tokio::test]
async fn the_calls_completed_callback_names_its_record_true_recording() {
    let fx = Fixture::new().await;
    let account = AccountSid::generate();
    let call = CallSid::generate();
    let recording = RecordingSid::generate();
    // Separate appends: the tracker keeps what it learnt between batches.
    fx.append(
        &call,
        &account,
        vec![
            (
                initiated("node-1", Some("https://app.example/status"), &[]),
                0,
            ),
            (CallAnswered::default().into(), 1_000),
            (
                recording_started(&recording, "OutboundAPI", None, &[]),
                1_000,
            ),
        ],
    )
    .await;
    fx.append(
        &call,
        &account,
        vec![(
            recording_completed(&recording, "OutboundAPI", "completed", 20_400, None),
            21_500,
        )],
    )
    .await;
    fx.append(
        &call,
        &account,
        vec![(completed(CallStatus::Completed, 20_500), 21_500)],
    )
    .await;
    let rows = fx.outbox(&call);
    assert_eq!(rows.len(), 1, "the recording itself subscribed to nothing");
    assert_eq!(rows[0].event, CallbackEvent::Completed);
    assert_eq!(param(&rows[0], "RecordingSid"), Some(recording.as_str()));
    assert_eq!(param(&rows[0], "RecordingDuration"), Some("21"));
    assert!(param(&rows[0], "RecordingUrl").is_some_and(|u| u.ends_with(recording.as_str())));
}
