//! Read models against a real SQLite event log in a temp dir.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dialtone_events::payload::{
    CallAnswered, CallCompleted, CallInitiated, CallRejected, CallRinging, CallStatus, Direction,
    HttpMethod, NumberConfig, NumberProvisioned, NumberReleased, NumberUpdated, RatePrice,
    RatePublished, RecordingCompleted, RecordingStarted,
};
use dialtone_events::sid::{AccountSid, CallSid, PhoneNumberSid, RateSid, RecordingSid};
use dialtone_events::sqlite::SqliteLog;
use dialtone_events::{EventLog, ExpectedVersion, NewEvent, Position, RecordedEvent};
use dialtone_projections::billing::{self, CALLS_INBOUND, CALLS_OUTBOUND};
use dialtone_projections::calls::{self, CallFilter};
use dialtone_projections::paging::{Anchor, PageRequest};
use dialtone_projections::*;
use rusqlite::types::Value;
use rusqlite::{Connection, Transaction};
use time::macros::{date, datetime};
use time::OffsetDateTime;

fn fast() -> RunnerConfig {
    RunnerConfig {
        max_batch: 4096,
        retry_backoff: Duration::from_millis(20),
        ..RunnerConfig::default()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    db: PathBuf,
    accounts: AccountDirectory,
    numbers: NumberDirectory,
    runner: Option<ProjectionRunner>,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> =
            Arc::new(SqliteLog::open(dir.path().join("events.db"), "node-1").unwrap());
        let db = dir.path().join(READ_MODELS_FILE);
        let mut fixture = Fixture {
            _dir: dir,
            log,
            db,
            accounts: AccountDirectory::default(),
            numbers: NumberDirectory::default(),
            runner: None,
        };
        fixture.start().await;
        fixture
    }

    async fn start(&mut self) {
        // The standard projections are idempotent per call; the counter is not, so it
        // exposes any event applied twice or lost.
        let mut projections =
            standard_projections(&self.accounts, &self.numbers, RateTable::default());
        projections.push(Box::new(Counter { version: 1 }));
        let runner = ProjectionRunner::start(self.log.clone(), &self.db, projections, fast())
            .await
            .unwrap();
        self.runner = Some(runner);
    }

    async fn stop(&mut self) {
        if let Some(runner) = self.runner.take() {
            runner.shutdown().await;
        }
    }

    fn handle(&self) -> RunnerHandle {
        self.runner.as_ref().unwrap().handle()
    }

    async fn append(&self, stream: &str, events: Vec<NewEvent>) -> Vec<Position> {
        let appended = self
            .log
            .append(stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
        tokio::time::timeout(
            Duration::from_secs(10),
            self.handle().wait_for(&appended.positions),
        )
        .await
        .expect("projections applied the append in time")
        .unwrap();
        appended.positions
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, ProjectionError>) -> T {
        ReadModels::new(&self.db).read_blocking(f).unwrap()
    }

    /// Events the counter projection applied.
    fn counted(&self) -> u64 {
        self.read(|c| {
            c.query_row("SELECT events FROM counter", [], |r| r.get(0))
                .map_err(|source| ProjectionError::Sqlite {
                    context: "counter",
                    source,
                })
        })
    }

    async fn log_len(&self) -> u64 {
        self.log
            .read_all(&dialtone_events::Cursor::start(), 1_000_000)
            .await
            .unwrap()
            .len() as u64
    }
}

/// How a scripted call ends.
enum Outcome {
    /// Answered 1 s after ringing, talking for this many ms.
    Answered(u64),
    Rejected(&'static str),
    NoAnswer,
}

fn call_events(
    account: &AccountSid,
    direction: Direction,
    t0: OffsetDateTime,
    outcome: Outcome,
) -> Vec<NewEvent> {
    let at = |ms: i64| t0 + time::Duration::milliseconds(ms);
    let ev = |payload: dialtone_events::Payload, ms: i64| {
        NewEvent::new(account.as_str(), payload).at(at(ms))
    };
    let mut events = vec![
        ev(
            CallInitiated {
                direction,
                from: "+14155550100".into(),
                to: "+14155550199".into(),
                owner_node: "node-1".into(),
                sip_call_id: Some("abc@host".into()),
                source_addr: None,
                phone_number_sid: None,
                parent_call_sid: None,
                forwarded_from: None,
                application: Default::default(),
            }
            .into(),
            0,
        ),
        ev(
            CallRinging {
                sip_code: Some(180),
            }
            .into(),
            100,
        ),
    ];
    match outcome {
        Outcome::Answered(talk_ms) => {
            events.push(ev(
                CallAnswered {
                    codec: Some("PCMU".into()),
                }
                .into(),
                1_000,
            ));
            events.push(ev(
                CallCompleted {
                    status: CallStatus::Completed,
                    duration_s: talk_ms / 1000,
                    answered_ms: talk_ms,
                    answered_at: Some(at(1_000)),
                    hangup_by: "caller".into(),
                    sip_code: None,
                }
                .into(),
                1_000 + talk_ms as i64,
            ));
        }
        Outcome::Rejected(reason) => {
            events.push(ev(
                CallRejected {
                    reason: reason.into(),
                    sip_code: if reason == "busy" { 486 } else { 603 },
                }
                .into(),
                200,
            ));
            events.push(ev(
                CallCompleted {
                    status: if reason == "busy" {
                        CallStatus::Busy
                    } else {
                        CallStatus::Failed
                    },
                    duration_s: 0,
                    answered_ms: 0,
                    answered_at: None,
                    hangup_by: "dialtone".into(),
                    sip_code: Some(486),
                }
                .into(),
                210,
            ));
        }
        Outcome::NoAnswer => events.push(ev(
            CallCompleted {
                status: CallStatus::NoAnswer,
                duration_s: 0,
                answered_ms: 0,
                answered_at: None,
                hangup_by: "callee".into(),
                sip_code: Some(408),
            }
            .into(),
            30_000,
        )),
    }
    events
}

async fn place_call(
    fx: &Fixture,
    account: &AccountSid,
    direction: Direction,
    t0: OffsetDateTime,
    outcome: Outcome,
) -> CallSid {
    let sid = CallSid::generate();
    fx.append(sid.as_str(), call_events(account, direction, t0, outcome))
        .await;
    sid
}

fn usage(fx: &Fixture, account: &AccountSid) -> Vec<billing::UsageRow> {
    fx.read(|c| {
        billing::usage_rows(
            c,
            account.as_str(),
            date!(2000 - 01 - 01),
            date!(2100 - 01 - 01),
        )
    })
}

#[tokio::test]
async fn accounts_authenticate_with_derived_tokens_and_rotation() {
    let fx = Fixture::new().await;
    let secret = b"node secret";
    let (sid, token) = create_account(fx.log.as_ref(), secret, "Acme")
        .await
        .unwrap();
    fx.handle().catch_up(fx.log.as_ref()).await.unwrap();
    let entry = fx
        .accounts
        .authenticate(sid.as_str(), &token)
        .expect("token accepted");
    assert_eq!(entry.friendly_name, "Acme");
    assert_eq!(
        entry.auth_token(secret),
        token,
        "any node can re-derive the token"
    );
    assert!(fx.accounts.authenticate(sid.as_str(), "wrong").is_none());
    // The log holds the hash and salt, never the token.
    let events = fx.log.read_stream(sid.as_str(), 1).await.unwrap();
    assert!(!events[0].event.to_json().contains(&token));

    let new_token = rotate_auth_token(fx.log.as_ref(), secret, &sid)
        .await
        .unwrap();
    fx.handle().catch_up(fx.log.as_ref()).await.unwrap();
    assert!(fx.accounts.authenticate(sid.as_str(), &token).is_none());
    assert!(fx.accounts.authenticate(sid.as_str(), &new_token).is_some());
    let row = fx.read(|c| accounts::get_account(c, sid.as_str())).unwrap();
    assert_eq!(row.token_sha256, token_sha256(&new_token));
}

fn number_config(number: &str, url: &str) -> NumberConfig {
    NumberConfig {
        phone_number: number.into(),
        friendly_name: "main line".into(),
        voice_url: Some(url.into()),
        voice_method: HttpMethod::Post,
        voice_fallback_url: None,
        voice_fallback_method: HttpMethod::Post,
        status_callback: Some("https://app.example/status".into()),
        status_callback_method: HttpMethod::Get,
        voice_application_sid: None,
        sms: Default::default(),
    }
}

#[tokio::test]
async fn numbers_provision_update_release_and_survive_restart() {
    let mut fx = Fixture::new().await;
    let a = AccountSid::generate();
    let b = AccountSid::generate();
    let pn = PhoneNumberSid::generate();
    fx.append(
        pn.as_str(),
        vec![NewEvent::new(
            a.as_str(),
            NumberProvisioned {
                config: number_config("+14155550199", "https://app.example/voice"),
                monthly_price_micros: None,
            },
        )],
    )
    .await;
    let route = fx.numbers.lookup("+14155550199").expect("in the directory");
    assert_eq!(
        (route.sid.as_str(), route.account_sid.as_str()),
        (pn.as_str(), a.as_str())
    );
    assert_eq!(route.config.status_callback_method, HttpMethod::Get);

    // Another stream provisioning the same number loses: first in the log wins.
    let intruder = PhoneNumberSid::generate();
    fx.append(
        intruder.as_str(),
        vec![NewEvent::new(
            b.as_str(),
            NumberProvisioned {
                config: number_config("+14155550199", "https://evil.example/"),
                monthly_price_micros: None,
            },
        )],
    )
    .await;
    assert_eq!(
        fx.numbers.lookup("+14155550199").unwrap().account_sid,
        a.as_str()
    );
    assert!(fx
        .read(|c| numbers::get_number(c, intruder.as_str()))
        .is_none());

    fx.append(
        pn.as_str(),
        vec![NewEvent::new(
            a.as_str(),
            NumberUpdated {
                config: number_config("+14155550199", "https://app.example/v2"),
            },
        )],
    )
    .await;
    assert_eq!(
        fx.numbers
            .lookup("+14155550199")
            .unwrap()
            .config
            .voice_url
            .as_deref(),
        Some("https://app.example/v2")
    );
    let record = fx.read(|c| numbers::get_number(c, pn.as_str())).unwrap();
    assert_eq!(record.version, 2, "the stream version, for ExpectedVersion");

    // A restart loads the directory from the committed rows.
    fx.stop().await;
    fx.numbers = NumberDirectory::default();
    fx.start().await;
    assert_eq!(fx.numbers.len(), 1);
    assert_eq!(
        fx.numbers
            .lookup("+14155550199")
            .unwrap()
            .config
            .voice_url
            .as_deref(),
        Some("https://app.example/v2")
    );

    fx.append(
        pn.as_str(),
        vec![NewEvent::new(
            a.as_str(),
            NumberReleased {
                phone_number: "+14155550199".into(),
            },
        )],
    )
    .await;
    assert!(fx.numbers.lookup("+14155550199").is_none());
    assert!(fx.read(|c| numbers::get_number(c, pn.as_str())).is_none());
}

#[tokio::test]
async fn calls_project_the_call_resource_with_its_price() {
    let fx = Fixture::new().await;
    let account = AccountSid::generate();
    let t0 = datetime!(2025-03-10 12:00:00 UTC);
    let answered = place_call(
        &fx,
        &account,
        Direction::Inbound,
        t0,
        Outcome::Answered(15_400),
    )
    .await;
    let busy = place_call(
        &fx,
        &account,
        Direction::Inbound,
        t0,
        Outcome::Rejected("busy"),
    )
    .await;
    let missed = place_call(&fx, &account, Direction::OutboundApi, t0, Outcome::NoAnswer).await;

    let record = fx
        .read(|c| calls::get_call(c, account.as_str(), answered.as_str()))
        .unwrap();
    let call = &record.call;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.direction, Direction::Inbound);
    assert_eq!(call.start_time, Some(t0 + time::Duration::seconds(1)));
    assert_eq!(
        call.end_time,
        Some(t0 + time::Duration::milliseconds(16_400))
    );
    assert_eq!(call.duration_s, Some(15));
    assert_eq!(call.date_created, t0);
    assert_eq!(record.price_micros, Some(8_500));
    assert_eq!(record.price_unit.as_deref(), Some("USD"));

    let record = fx
        .read(|c| calls::get_call(c, account.as_str(), busy.as_str()))
        .unwrap();
    assert_eq!(
        (record.call.status, record.call.duration_s),
        (CallStatus::Busy, None)
    );
    assert_eq!(record.price_micros, None);
    assert_eq!(record.price_unit.as_deref(), Some("USD"));

    let record = fx
        .read(|c| calls::get_call(c, account.as_str(), missed.as_str()))
        .unwrap();
    assert_eq!(record.call.status, CallStatus::NoAnswer);
    assert_eq!(record.call.queue_time_ms, 100, "queued until ringing");

    // Another account cannot read the call.
    let other = AccountSid::generate();
    assert!(fx
        .read(|c| calls::get_call(c, other.as_str(), answered.as_str()))
        .is_none());

    // Filters.
    let busy_only = fx.read(|c| {
        calls::list_calls(
            c,
            account.as_str(),
            &CallFilter {
                status: Some(CallStatus::Busy),
                ..Default::default()
            },
            &PageRequest::first(50),
        )
    });
    assert_eq!(busy_only.items.len(), 1);
    assert_eq!(busy_only.items[0].call.sid, busy.as_str());
    let on_day = |d| {
        fx.read(|c| {
            calls::list_calls(
                c,
                account.as_str(),
                &CallFilter {
                    start_time: calls::DateFilter {
                        on: Some(d),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                &PageRequest::first(50),
            )
        })
        .items
        .len()
    };
    assert_eq!(
        on_day(date!(2025 - 03 - 10)),
        1,
        "only the answered call has a start time"
    );
    assert_eq!(on_day(date!(2025 - 03 - 11)), 0);
}

#[tokio::test]
async fn call_lists_page_newest_first_with_stable_anchors() {
    let fx = Fixture::new().await;
    let account = AccountSid::generate();
    let t0 = datetime!(2025-03-10 12:00:00 UTC);
    let mut sids = Vec::new();
    for i in 0..7 {
        let t = t0 + time::Duration::minutes(i);
        sids.push(place_call(&fx, &account, Direction::Inbound, t, Outcome::NoAnswer).await);
    }
    sids.reverse(); // newest first
    let list = |request: PageRequest| {
        let account = account.clone();
        fx.read(move |c| calls::list_calls(c, account.as_str(), &CallFilter::default(), &request))
    };
    let page1 = list(PageRequest::first(3));
    let ids = |p: &paging::Page<calls::CallRecord>| {
        p.items
            .iter()
            .map(|r| r.call.sid.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&page1),
        sids[0..3].iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    assert!(page1.more_after && !page1.more_before);
    let after = calls::call_sort_key(page1.items.last().unwrap());
    let page2 = list(PageRequest {
        size: 3,
        offset: 0,
        anchor: Some(Anchor::After(after)),
    });
    assert_eq!(
        ids(&page2),
        sids[3..6].iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    let page3 = list(PageRequest {
        size: 3,
        offset: 0,
        anchor: Some(Anchor::After(calls::call_sort_key(
            page2.items.last().unwrap(),
        ))),
    });
    assert_eq!(ids(&page3), vec![sids[6].to_string()]);
    assert!(!page3.more_after && page3.more_before);
    // Back from page 3 to page 2, then by offset.
    let back = list(PageRequest {
        size: 3,
        offset: 0,
        anchor: Some(Anchor::Before(calls::call_sort_key(&page3.items[0]))),
    });
    assert_eq!(ids(&back), ids(&page2));
    assert!(back.more_before && back.more_after);
    let by_offset = list(PageRequest {
        size: 3,
        offset: 3,
        anchor: None,
    });
    assert_eq!(ids(&by_offset), ids(&page2));
}

#[tokio::test]
async fn billing_rounds_up_per_started_minute_and_skips_unanswered_calls() {
    let fx = Fixture::new().await;
    let account = AccountSid::generate();
    let t0 = datetime!(2025-03-10 12:00:00 UTC);
    let sub_second = place_call(
        &fx,
        &account,
        Direction::Inbound,
        t0,
        Outcome::Answered(400),
    )
    .await;
    let sixty_one = place_call(
        &fx,
        &account,
        Direction::Inbound,
        t0,
        Outcome::Answered(61_000),
    )
    .await;
    let rejected = place_call(
        &fx,
        &account,
        Direction::Inbound,
        t0,
        Outcome::Rejected("rejected"),
    )
    .await;
    let outbound = place_call(
        &fx,
        &account,
        Direction::OutboundDial,
        t0,
        Outcome::Answered(60_000),
    )
    .await;

    let leg = |sid: &CallSid| fx.read(|c| billing::get_leg(c, sid.as_str())).unwrap();
    let charge = leg(&sub_second).charge.expect("billed");
    assert_eq!((charge.minutes, charge.price_micros), (1, 8_500));
    let charge = leg(&sixty_one).charge.expect("billed");
    assert_eq!((charge.minutes, charge.price_micros), (2, 17_000));
    let rejected_leg = leg(&rejected);
    assert_eq!(rejected_leg.state, billing::LEG_UNBILLED);
    assert!(rejected_leg.charge.is_none());
    let charge = leg(&outbound).charge.expect("billed");
    assert_eq!(
        (
            charge.category.as_str(),
            charge.minutes,
            charge.price_micros
        ),
        (CALLS_OUTBOUND, 1, 14_000)
    );

    let rows = usage(&fx, &account);
    let by_category: BTreeMap<_, _> = rows
        .iter()
        .map(|r| {
            (
                r.category.as_str(),
                (r.day, r.count, r.minutes, r.price_micros),
            )
        })
        .collect();
    assert_eq!(
        by_category[CALLS_INBOUND],
        (date!(2025 - 03 - 10), 2, 3, 25_500)
    );
    assert_eq!(
        by_category[CALLS_OUTBOUND],
        (date!(2025 - 03 - 10), 1, 1, 14_000)
    );
    assert_eq!(rows.len(), 2);
}

#[tokio::test]
async fn published_rates_apply_from_their_effective_time() {
    let fx = Fixture::new().await;
    let account = AccountSid::generate();
    let rate = RateSid::generate();
    fx.append(
        rate.as_str(),
        vec![NewEvent::new(
            "",
            RatePublished {
                effective_from: datetime!(2025-03-10 12:00:00 UTC),
                currency: "usd".into(),
                prices: vec![RatePrice {
                    category: CALLS_INBOUND.into(),
                    per_minute_micros: 10_000,
                    prefix: None,
                }],
            },
        )
        // Published before the calls ended: a table never prices a leg that ended before it.
        .at(datetime!(2025-03-01 00:00:00 UTC))],
    )
    .await;
    let before = place_call(
        &fx,
        &account,
        Direction::Inbound,
        datetime!(2025-03-10 11:00:00 UTC),
        Outcome::Answered(30_000),
    )
    .await;
    let after = place_call(
        &fx,
        &account,
        Direction::Inbound,
        datetime!(2025-03-10 13:00:00 UTC),
        Outcome::Answered(30_000),
    )
    .await;
    let leg = |sid: &CallSid| {
        fx.read(|c| billing::get_leg(c, sid.as_str()))
            .unwrap()
            .charge
            .unwrap()
    };
    assert_eq!(
        (leg(&before).price_micros, leg(&before).rated_by),
        (8_500, "config".to_owned())
    );
    assert_eq!(leg(&after).price_micros, 10_000);
    assert_eq!(leg(&after).currency, "USD");
    assert_eq!(leg(&after).rated_by, format!("{rate}/1"));
}

#[tokio::test]
async fn recordings_are_projected() {
    let fx = Fixture::new().await;
    let account = AccountSid::generate();
    let call = place_call(
        &fx,
        &account,
        Direction::Inbound,
        datetime!(2025-03-10 12:00:00 UTC),
        Outcome::Answered(20_000),
    )
    .await;
    let re = RecordingSid::generate();
    fx.append(
        call.as_str(),
        vec![
            NewEvent::new(
                account.as_str(),
                RecordingStarted::new(re.clone(), "RecordVerb", 1),
            ),
            NewEvent::new(
                account.as_str(),
                RecordingCompleted {
                    recording_sid: re.clone(),
                    status: "completed".into(),
                    duration_ms: 4_200,
                    path: format!("recordings/{re}.wav"),
                    channels: 1,
                    source: "RecordVerb".into(),
                    digits: Some("#".into()),
                    error_code: None,
                },
            ),
        ],
    )
    .await;
    let row = fx
        .read(|c| recordings::get_recording(c, account.as_str(), re.as_str()))
        .unwrap();
    assert_eq!(row.call_sid, call.as_str());
    assert_eq!(
        (row.status.as_str(), row.duration_ms),
        ("completed", Some(4_200))
    );
    assert_eq!(row.path, Some(format!("recordings/{re}.wav")));
}

#[tokio::test]
async fn restarting_the_runner_never_double_counts() {
    let mut fx = Fixture::new().await;
    let account = AccountSid::generate();
    let t0 = datetime!(2025-03-10 12:00:00 UTC);
    for _ in 0..5 {
        place_call(
            &fx,
            &account,
            Direction::Inbound,
            t0,
            Outcome::Answered(10_000),
        )
        .await;
    }
    fx.stop().await;
    // Events appended while the runner is down are applied once on restart.
    for _ in 0..3 {
        let sid = CallSid::generate();
        fx.log
            .append(
                sid.as_str(),
                ExpectedVersion::NoStream,
                call_events(&account, Direction::Inbound, t0, Outcome::Answered(10_000)),
            )
            .await
            .unwrap();
    }
    fx.start().await;
    fx.handle().catch_up(fx.log.as_ref()).await.unwrap();
    // And once more with nothing new.
    fx.stop().await;
    fx.start().await;
    fx.handle().catch_up(fx.log.as_ref()).await.unwrap();
    let rows = usage(&fx, &account);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].count, rows[0].minutes), (8, 8));
    let calls = fx.read(|c| {
        calls::list_calls(
            c,
            account.as_str(),
            &CallFilter::default(),
            &PageRequest::first(100),
        )
    });
    assert_eq!(calls.items.len(), 8);
    assert_eq!(
        fx.counted(),
        fx.log_len().await,
        "every event applied exactly once"
    );
    let checkpoint = fx.read(|c| {
        c.query_row(
            "SELECT cursor FROM projection_checkpoints WHERE projection = 'billing'",
            [],
            |r| r.get::<_, String>(0),
        )
        .map_err(|source| ProjectionError::Sqlite {
            context: "checkpoint",
            source,
        })
    });
    assert_eq!(
        checkpoint,
        format!("{{\"log\":{}}}", fx.log_len().await + 1)
    );
}

/// Fails the first time it sees a `call.completed`, after the billing projection has
/// already applied the same batch's events in the shared transaction.
struct FailOnce {
    failed: Arc<AtomicBool>,
}

impl Projection for FailOnce {
    fn name(&self) -> &'static str {
        "zz-fail-once"
    }
    fn version(&self) -> u32 {
        1
    }
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }
    fn init(&self, _: &Transaction<'_>) -> Result<(), ProjectionError> {
        Ok(())
    }
    fn apply(&mut self, event: &RecordedEvent, _: &Transaction<'_>) -> Result<(), ProjectionError> {
        if event.event.event_type == "dialtone.call.completed"
            && !self.failed.swap(true, Ordering::SeqCst)
        {
            return Err(ProjectionError::Io {
                context: "simulated failure",
                source: std::io::Error::other("disk on fire"),
            });
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_batch_rolls_back_every_projection_and_is_retried_once() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> =
        Arc::new(SqliteLog::open(dir.path().join("events.db"), "n").unwrap());
    let db = dir.path().join(READ_MODELS_FILE);
    let failed = Arc::new(AtomicBool::new(false));
    let mut projections = standard_projections(
        &AccountDirectory::default(),
        &NumberDirectory::default(),
        RateTable::default(),
    );
    projections.push(Box::new(Counter { version: 1 }));
    projections.push(Box::new(FailOnce {
        failed: failed.clone(),
    }));
    let runner = ProjectionRunner::start(log.clone(), &db, projections, fast())
        .await
        .unwrap();
    let account = AccountSid::generate();
    let sid = CallSid::generate();
    let appended = log
        .append(
            sid.as_str(),
            ExpectedVersion::NoStream,
            call_events(
                &account,
                Direction::Inbound,
                datetime!(2025-03-10 12:00 UTC),
                Outcome::Answered(90_000),
            ),
        )
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        runner.handle().wait_for(&appended.positions),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(failed.load(Ordering::SeqCst), "the failure happened");
    let progress = runner.handle().progress();
    assert!(progress.last_error.unwrap().contains("disk on fire"));
    let rows = ReadModels::new(&db)
        .read_blocking(|c| {
            billing::usage_rows(
                c,
                account.as_str(),
                date!(2025 - 01 - 01),
                date!(2025 - 12 - 31),
            )
        })
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].count, rows[0].minutes),
        (1, 2),
        "billed exactly once"
    );
    let counted: u64 = ReadModels::new(&db)
        .read_blocking(|c| {
            c.query_row("SELECT events FROM counter", [], |r| r.get(0))
                .map_err(|source| ProjectionError::Sqlite {
                    context: "counter",
                    source,
                })
        })
        .unwrap();
    assert_eq!(
        counted, 4,
        "the rolled-back batch was applied exactly once on retry"
    );
}

/// Counts events into its own table; its version is chosen by the test.
struct Counter {
    version: u32,
}

impl Projection for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn tables(&self) -> &'static [&'static str] {
        &["counter"]
    }
    fn init(&self, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS counter (version INTEGER NOT NULL, events INTEGER NOT NULL);
             INSERT INTO counter SELECT 0, 0 WHERE NOT EXISTS (SELECT 1 FROM counter);",
        )
        .map_err(|source| ProjectionError::Sqlite { context: "counter", source })
    }
    fn apply(&mut self, _: &RecordedEvent, tx: &Transaction<'_>) -> Result<(), ProjectionError> {
        tx.execute(
            "UPDATE counter SET events = events + 1, version = ?1",
            [self.version],
        )
        .map_err(|source| ProjectionError::Sqlite {
            context: "counter",
            source,
        })?;
        Ok(())
    }
}

async fn run_counter(log: &Arc<dyn EventLog>, db: &Path, version: u32) -> (u32, u64) {
    let runner =
        ProjectionRunner::start(log.clone(), db, vec![Box::new(Counter { version })], fast())
            .await
            .unwrap();
    runner.catch_up(log.as_ref()).await.unwrap();
    runner.shutdown().await;
    ReadModels::new(db)
        .read_blocking(|c| {
            c.query_row("SELECT version, events FROM counter", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(|source| ProjectionError::Sqlite {
                context: "counter",
                source,
            })
        })
        .unwrap()
}

#[tokio::test]
async fn a_version_bump_drops_and_rebuilds_the_projection() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> =
        Arc::new(SqliteLog::open(dir.path().join("events.db"), "n").unwrap());
    let db = dir.path().join(READ_MODELS_FILE);
    let account = AccountSid::generate();
    for _ in 0..3 {
        let sid = CallSid::generate();
        log.append(
            sid.as_str(),
            ExpectedVersion::NoStream,
            call_events(
                &account,
                Direction::Inbound,
                datetime!(2025-03-10 12:00 UTC),
                Outcome::NoAnswer,
            ),
        )
        .await
        .unwrap();
    }
    assert_eq!(run_counter(&log, &db, 1).await, (1, 9));
    assert_eq!(
        run_counter(&log, &db, 1).await,
        (1, 9),
        "same version resumes"
    );
    assert_eq!(
        run_counter(&log, &db, 2).await,
        (2, 9),
        "new version rebuilt from scratch"
    );
}

/// Every row of every read-model table, in a canonical order.
fn dump(db: &Path) -> BTreeMap<String, Vec<Vec<String>>> {
    let conn = Connection::open(db).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'projection_checkpoints' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = BTreeMap::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = stmt.column_count();
        let mut rows: Vec<Vec<String>> = stmt
            .query_map([], |r| {
                (0..columns)
                    .map(|i| r.get::<_, Value>(i).map(|v| format!("{v:?}")))
                    .collect()
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort();
        out.insert(table, rows);
    }
    out
}

#[tokio::test]
async fn rebuilding_from_the_log_gives_identical_rows() {
    let mut fx = Fixture::new().await;
    let secret = b"s";
    let (account, _) = create_account(fx.log.as_ref(), secret, "Acme")
        .await
        .unwrap();
    let pn = PhoneNumberSid::generate();
    fx.append(
        pn.as_str(),
        vec![
            NewEvent::new(
                account.as_str(),
                NumberProvisioned {
                    config: number_config("+14155550199", "https://a/"),
                    monthly_price_micros: None,
                },
            ),
            NewEvent::new(
                account.as_str(),
                NumberUpdated {
                    config: number_config("+14155550199", "https://b/"),
                },
            ),
        ],
    )
    .await;
    let rate = RateSid::generate();
    fx.append(
        rate.as_str(),
        vec![NewEvent::new(
            account.as_str(),
            RatePublished {
                effective_from: datetime!(2025-03-11 00:00 UTC),
                currency: "USD".into(),
                prices: vec![RatePrice {
                    category: CALLS_OUTBOUND.into(),
                    per_minute_micros: 20_000,
                    prefix: None,
                }],
            },
        )],
    )
    .await;
    let t0 = datetime!(2025-03-10 23:59:30 UTC);
    for i in 0..40i64 {
        let outcome = match i % 4 {
            0 => Outcome::Answered((i as u64) * 7_001),
            1 => Outcome::Rejected("busy"),
            2 => Outcome::NoAnswer,
            _ => Outcome::Answered(400),
        };
        let direction = if i % 3 == 0 {
            Direction::OutboundApi
        } else {
            Direction::Inbound
        };
        place_call(
            &fx,
            &account,
            direction,
            t0 + time::Duration::seconds(i * 5),
            outcome,
        )
        .await;
    }
    let before = dump(&fx.db);
    assert!(
        before["usage_daily"].len() >= 3,
        "usage spans two days and two categories"
    );
    assert_eq!(before["calls"].len(), 40);

    // Rebuild each projection in place.
    fx.stop().await;
    for projection in standard_projections(&fx.accounts, &fx.numbers, RateTable::default()) {
        let report = rebuild(fx.log.as_ref(), &fx.db, projection, |_| {})
            .await
            .unwrap();
        assert!(report.events > 40);
        println!(
            "rebuilt {} from {} events in {:?} ({:.0} events/s)",
            report.projection, report.events, report.elapsed, report.events_per_second
        );
    }
    assert_eq!(dump(&fx.db), before);

    // A runner started after the rebuild continues, it does not reapply.
    fx.start().await;
    fx.handle().catch_up(fx.log.as_ref()).await.unwrap();
    assert_eq!(dump(&fx.db), before);
    assert_eq!(
        fx.numbers
            .lookup("+14155550199")
            .unwrap()
            .config
            .voice_url
            .as_deref(),
        Some("https://b/")
    );

    // A fresh database built by the runner from the log is identical too.
    let fresh = fx._dir.path().join("fresh.db");
    let mut projections = standard_projections(
        &AccountDirectory::default(),
        &NumberDirectory::default(),
        RateTable::default(),
    );
    projections.push(Box::new(Counter { version: 1 }));
    let runner = ProjectionRunner::start(fx.log.clone(), &fresh, projections, fast())
        .await
        .unwrap();
    runner.catch_up(fx.log.as_ref()).await.unwrap();
    runner.shutdown().await;
    assert_eq!(dump(&fresh), before);
}

#[tokio::test]
async fn waiting_fails_instead_of_hanging_when_the_runner_stops() {
    let mut fx = Fixture::new().await;
    let handle = fx.handle();
    fx.stop().await;
    let never = Position {
        partition: "log".into(),
        offset: 1_000_000,
    };
    let result = tokio::time::timeout(Duration::from_secs(5), handle.wait_for(&[never])).await;
    assert!(matches!(result, Ok(Err(ProjectionError::Stopped(_)))));
}
