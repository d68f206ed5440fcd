//! The status-callback deliverer with a real SQLite log, a real projection runner and a real
//! axum application receiving the callbacks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::Router;
use dialtone_events::payload::{
    CallAnswered, CallApplication, CallCompleted, CallInitiated, CallRinging, CallStatus,
    Direction, HttpMethod, RecordingCompleted, RecordingStarted,
};
use dialtone_events::sid::{AccountSid, CallSid, RecordingSid};
use dialtone_events::sqlite::SqliteLog;
use dialtone_events::{EventLog, ExpectedVersion, NewEvent, Payload};
use dialtone_projections::callbacks::{self, idempotency_token, DeliveryState};
use dialtone_projections::*;
use dialtone_voice::callbacks::{CallbackDeliverer, DelivererConfig, RetryPolicy};
use dialtone_voice::signature;

const SECRET: &[u8] = b"node secret of the callback tests";
const NODE: &str = "node-1";

/// A request the application received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    method: Method,
    /// The URL as requested (with the query for GET): what the signature covers.
    url: String,
    /// Form parameters (POST) or query parameters (GET).
    params: Vec<(String, String)>,
    signature: String,
    idempotency_token: String,
    user_agent: String,
    /// The status answered; `None` while the request hangs.
    replied: Option<u16>,
}

impl Received {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn sequence(&self) -> u32 {
        self.param("SequenceNumber").unwrap().parse().unwrap()
    }

    fn call(&self) -> &str {
        self.param("CallSid").unwrap()
    }

    /// Valid for `token` as Twilio's validators check it.
    fn signed_with(&self, token: &str) -> bool {
        let params: &[(String, String)] = if self.method == Method::POST {
            &self.params
        } else {
            &[]
        };
        signature::validate(token, &self.url, params, &self.signature)
    }
}

enum Reply {
    Status(u16),
    Hang,
}

type Script = Box<dyn Fn(&Received, u32) -> Reply + Send + Sync>;

struct AppState {
    base: String,
    received: Mutex<Vec<Received>>,
    hits: AtomicU32,
    script: Script,
}

/// An application that answers callbacks as `script` says (given the request and the
/// 1-based number of requests so far).
struct App {
    base: String,
    state: Arc<AppState>,
}

impl App {
    async fn start(script: impl Fn(&Received, u32) -> Reply + Send + Sync + 'static) -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(AppState {
            base: base.clone(),
            received: Mutex::new(Vec::new()),
            hits: AtomicU32::new(0),
            script: Box::new(script),
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        App { base, state }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    fn for_call(&self, call: &CallSid) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.call() == call.as_str())
            .collect()
    }

    /// Sequence numbers of the requests of `call` answered with a 2xx.
    fn delivered(&self, call: &CallSid) -> Vec<u32> {
        self.for_call(call)
            .iter()
            .filter(|r| r.replied.is_some_and(|s| (200..300).contains(&s)))
            .map(Received::sequence)
            .collect()
    }
}

async fn handle(
    State(state): State<Arc<AppState>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let encoded: &[u8] = if method == Method::POST {
        &body
    } else {
        uri.query().unwrap_or_default().as_bytes()
    };
    let mut received = Received {
        path: uri.path().to_owned(),
        method: method.clone(),
        url: format!("{}{}", state.base, uri),
        params: form_urlencoded_pairs(encoded),
        signature: header("x-twilio-signature"),
        idempotency_token: header("i-twilio-idempotency-token"),
        user_agent: header("user-agent"),
        replied: None,
    };
    let hit = state.hits.fetch_add(1, Ordering::SeqCst) + 1;
    let reply = (state.script)(&received, hit);
    if let Reply::Status(status) = reply {
        received.replied = Some(status);
    }
    state.received.lock().unwrap().push(received);
    match reply {
        Reply::Status(status) => StatusCode::from_u16(status).unwrap(),
        Reply::Hang => std::future::pending().await,
    }
}

fn form_urlencoded_pairs(encoded: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(encoded)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A data dir with a log, a runner and one account.
struct Env {
    _dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    db: PathBuf,
    accounts: AccountDirectory,
    runner: Option<ProjectionRunner>,
    account: AccountSid,
    token: String,
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> =
            Arc::new(SqliteLog::open(dir.path().join("events.db"), NODE).unwrap());
        let db = dir.path().join(READ_MODELS_FILE);
        let mut env = Env {
            _dir: dir,
            log,
            db,
            accounts: AccountDirectory::default(),
            runner: None,
            account: AccountSid::generate(),
            token: String::new(),
        };
        env.start_runner().await;
        let (account, token) = create_account(env.log.as_ref(), SECRET, "Callbacks")
            .await
            .unwrap();
        env.runner().catch_up(env.log.as_ref()).await.unwrap();
        env.account = account;
        env.token = token;
        env
    }

    /// Starts a runner on the data dir, with a fresh account directory (as a restarted
    /// process would).
    async fn start_runner(&mut self) {
        self.accounts = AccountDirectory::default();
        let runner = ProjectionRunner::start(
            self.log.clone(),
            &self.db,
            standard_projections(
                &self.accounts,
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
        self.runner = Some(runner);
    }

    fn runner(&self) -> &ProjectionRunner {
        self.runner.as_ref().unwrap()
    }

    fn deliverer(&self, config: DelivererConfig) -> CallbackDeliverer {
        CallbackDeliverer::start(
            self.log.clone(),
            ReadModels::new(&self.db),
            self.runner().handle(),
            self.accounts.clone(),
            config,
        )
        .unwrap()
    }

    /// Appends a whole answered call whose status callbacks go to `url`.
    async fn call(&self, owner: &str, url: &str, method: HttpMethod) -> CallSid {
        let call = CallSid::generate();
        let t0 = time::OffsetDateTime::now_utc();
        let at = |ms: i64| t0 + time::Duration::milliseconds(ms);
        let ev = |p: Payload, ms: i64| NewEvent::new(self.account.as_str(), p).at(at(ms));
        let events = vec![
            ev(
                CallInitiated {
                    direction: Direction::OutboundApi,
                    from: "+15551230000".into(),
                    to: "+15559870000".into(),
                    owner_node: owner.into(),
                    sip_call_id: None,
                    source_addr: None,
                    phone_number_sid: None,
                    parent_call_sid: None,
                    forwarded_from: None,
                    application: CallApplication {
                        url: Some("https://app.example/voice".into()),
                        status_callback: Some(url.to_owned()),
                        status_callback_method: method,
                        status_callback_events: vec![
                            "initiated".into(),
                            "ringing".into(),
                            "answered".into(),
                            "completed".into(),
                        ],
                        ..CallApplication::default()
                    },
                }
                .into(),
                0,
            ),
            ev(
                CallRinging {
                    sip_code: Some(180),
                }
                .into(),
                500,
            ),
            ev(CallAnswered::default().into(), 3_000),
            ev(
                CallCompleted {
                    status: CallStatus::Completed,
                    duration_s: 42,
                    answered_ms: 42_300,
                    answered_at: Some(at(3_000)),
                    hangup_by: "caller".into(),
                    sip_code: None,
                }
                .into(),
                45_300,
            ),
        ];
        self.log
            .append(call.as_str(), ExpectedVersion::NoStream, events)
            .await
            .unwrap();
        call
    }

    /// The callback outcome events of a call, in order.
    async fn outcomes(&self, call: &CallSid) -> Vec<Payload> {
        self.log
            .read_stream(call.as_str(), 1)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|r| match r.event.payload().unwrap() {
                p @ (Payload::CallbackDelivered(_) | Payload::CallbackFailed(_)) => Some(p),
                _ => None,
            })
            .collect()
    }

    async fn outbox_states(&self, call: &CallSid) -> Vec<DeliveryState> {
        self.runner().catch_up(self.log.as_ref()).await.unwrap();
        let sid = call.to_string();
        ReadModels::new(&self.db)
            .read(move |c| callbacks::outbox_of_call(c, &sid))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.state)
            .collect()
    }
}

/// Small delays so retries take milliseconds.
fn config(max_attempts: u32) -> DelivererConfig {
    let mut config = DelivererConfig::new(NODE, SECRET);
    config.poll_interval = Duration::from_millis(20);
    config.retry = RetryPolicy {
        initial_delay: Duration::from_millis(20),
        factor: 2.0,
        max_delay: Duration::from_millis(100),
        max_attempts,
    };
    config
}

/// Waits (polling, up to 10 s) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`eventually`], for an async check.
async fn eventually_async<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn delivered_attempts(outcomes: &[Payload]) -> Vec<(String, u32, u32)> {
    outcomes
        .iter()
        .map(|p| match p {
            Payload::CallbackDelivered(d) => {
                ("delivered".to_owned(), d.sequence_number, d.attempts)
            }
            Payload::CallbackFailed(f) => ("failed".to_owned(), f.sequence_number, f.attempts),
            other => panic!("not an outcome: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_and_every_event_arrives_in_order_and_signed() {
    let env = Env::new().await;
    // The first two requests fail.
    let app = App::start(|_, hit| Reply::Status(if hit <= 2 { 500 } else { 204 })).await;
    let call = env.call(NODE, &app.url("/status"), HttpMethod::Post).await;
    let deliverer = env.deliverer(config(6));
    eventually("four delivered callbacks", || {
        app.delivered(&call).len() == 4
    })
    .await;

    let received = app.for_call(&call);
    let sequences: Vec<u32> = received.iter().map(Received::sequence).collect();
    assert_eq!(
        sequences,
        [0, 0, 0, 1, 2, 3],
        "strictly in order, retries first"
    );
    let replies: Vec<_> = received.iter().map(|r| r.replied).collect();
    assert_eq!(
        replies,
        [
            Some(500),
            Some(500),
            Some(204),
            Some(204),
            Some(204),
            Some(204)
        ]
    );
    let ok: Vec<&Received> = received.iter().skip(2).collect();
    let events: Vec<_> = ok
        .iter()
        .map(|r| r.param("StatusCallbackEvent").unwrap())
        .collect();
    assert_eq!(events, ["initiated", "ringing", "answered", "completed"]);
    let statuses: Vec<_> = ok.iter().map(|r| r.param("CallStatus").unwrap()).collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"]
    );
    assert_eq!(ok[3].param("CallDuration"), Some("42"));
    assert_eq!(ok[3].param("Duration"), Some("1"));
    assert_eq!(ok[3].param("SipResponseCode"), Some("200"));
    for r in &received {
        assert_eq!(r.path, "/status");
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.user_agent, "TwilioProxy/1.1");
        assert_eq!(r.param("AccountSid"), Some(env.account.as_str()));
        assert!(r.signed_with(&env.token), "signature of {r:?}");
        assert!(!r.signed_with("not-the-token"));
        assert_eq!(
            r.idempotency_token,
            idempotency_token(call.as_str(), r.sequence()),
            "the same token on every attempt"
        );
    }
    assert_ne!(received[0].idempotency_token, received[3].idempotency_token);

    eventually_async("four outcomes in the log", || async {
        env.outcomes(&call).await.len() == 4
    })
    .await;
    let outcomes = env.outcomes(&call).await;
    assert_eq!(
        delivered_attempts(&outcomes),
        [
            ("delivered".to_owned(), 0, 3),
            ("delivered".to_owned(), 1, 1),
            ("delivered".to_owned(), 2, 1),
            ("delivered".to_owned(), 3, 1)
        ]
    );
    match &outcomes[0] {
        Payload::CallbackDelivered(d) => {
            assert_eq!((d.status, d.event.as_str()), (204, "initiated"));
            assert_eq!(d.url, app.url("/status"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        env.outbox_states(&call).await,
        [DeliveryState::Delivered; 4]
    );
    deliverer.shutdown().await;
    assert_eq!(app.for_call(&call).len(), 6, "nothing sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_application_does_not_delay_other_calls() {
    let env = Env::new().await;
    let app = App::start(|r, _| {
        if r.path == "/slow" {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let mut config = config(6);
    config.max_in_flight = 2;
    let slow = env.call(NODE, &app.url("/slow"), HttpMethod::Post).await;
    let fast = env
        .call(NODE, &app.url("/fast?tenant=7"), HttpMethod::Get)
        .await;
    let elsewhere = env
        .call("node-2", &app.url("/elsewhere"), HttpMethod::Post)
        .await;
    let started = Instant::now();
    let deliverer = env.deliverer(config);
    eventually("the fast call's callbacks", || {
        app.delivered(&fast).len() == 4
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(app.delivered(&fast), [0, 1, 2, 3]);
    for r in app.for_call(&fast) {
        assert_eq!(r.method, Method::GET);
        assert_eq!(r.param("tenant"), Some("7"), "the URL's own query is kept");
        assert!(r.signed_with(&env.token), "GET signature of {}", r.url);
    }
    // The slow call is stuck on its first callback and sends nothing after it.
    let slow_requests = app.for_call(&slow);
    assert_eq!(slow_requests.len(), 1);
    assert_eq!(
        (slow_requests[0].sequence(), slow_requests[0].replied),
        (0, None)
    );
    // Another node's call is not this node's to deliver.
    assert!(app.received().iter().all(|r| r.path != "/elsewhere"));
    assert!(app.for_call(&elsewhere).is_empty());

    // Stopping abandons the hanging request without recording an outcome.
    tokio::time::timeout(Duration::from_secs(5), deliverer.shutdown())
        .await
        .expect("shutdown does not wait for hanging requests");
    assert!(env.outcomes(&slow).await.is_empty());
    assert_eq!(env.outbox_states(&slow).await, [DeliveryState::Pending; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_deliverer_sends_the_rest_and_nothing_twice() {
    let mut env = Env::new().await;
    let failing = Arc::new(AtomicBool::new(true));
    let app = {
        let failing = failing.clone();
        App::start(move |r, _| {
            if r.sequence() == 2 && failing.load(Ordering::SeqCst) {
                Reply::Status(500)
            } else {
                Reply::Status(200)
            }
        })
        .await
    };
    let call = env.call(NODE, &app.url("/status"), HttpMethod::Post).await;
    let deliverer = env.deliverer(config(1000));
    eventually("two delivered and the third retried", || {
        let seqs: Vec<u32> = app.for_call(&call).iter().map(Received::sequence).collect();
        seqs.iter().filter(|s| **s == 2).count() >= 2
    })
    .await;
    deliverer.shutdown().await;
    env.runner.take().unwrap().shutdown().await;

    let before = app.for_call(&call);
    assert_eq!(app.delivered(&call), [0, 1]);
    assert!(before.iter().all(|r| r.sequence() <= 2), "3 waits for 2");
    let token_of_2 = before.last().unwrap().idempotency_token.clone();

    failing.store(false, Ordering::SeqCst);
    env.start_runner().await;
    let deliverer = env.deliverer(config(1000));
    eventually("the remaining callbacks", || {
        app.delivered(&call).len() == 4
    })
    .await;
    deliverer.shutdown().await;

    let after: Vec<Received> = app.for_call(&call).into_iter().skip(before.len()).collect();
    let seqs: Vec<u32> = after.iter().map(Received::sequence).collect();
    assert_eq!(seqs, [2, 3], "delivered callbacks are not sent again");
    assert_eq!(after[0].idempotency_token, token_of_2);
    assert_eq!(app.delivered(&call), [0, 1, 2, 3]);
    let outcomes = delivered_attempts(&env.outcomes(&call).await);
    assert_eq!(
        outcomes
            .iter()
            .map(|(kind, seq, _)| (kind.as_str(), *seq))
            .collect::<Vec<_>>(),
        [
            ("delivered", 0),
            ("delivered", 1),
            ("delivered", 2),
            ("delivered", 3)
        ]
    );
    assert_eq!(
        env.outbox_states(&call).await,
        [DeliveryState::Delivered; 4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_given_up_is_recorded_and_the_next_one_still_goes_out() {
    let env = Env::new().await;
    let app = App::start(|r, _| Reply::Status(if r.sequence() == 1 { 503 } else { 200 })).await;
    let call = env.call(NODE, &app.url("/status"), HttpMethod::Post).await;
    let bad_url = env
        .call(NODE, "ftp://app.example/status", HttpMethod::Post)
        .await;
    let deliverer = env.deliverer(config(3));
    eventually("the callbacks after the failed one", || {
        app.delivered(&call).len() == 3
    })
    .await;
    let seqs: Vec<u32> = app.for_call(&call).iter().map(Received::sequence).collect();
    assert_eq!(seqs, [0, 1, 1, 1, 2, 3]);

    eventually_async("the outcomes", || async {
        env.outcomes(&call).await.len() == 4 && env.outcomes(&bad_url).await.len() == 4
    })
    .await;
    deliverer.shutdown().await;
    let outcomes = env.outcomes(&call).await;
    assert_eq!(
        delivered_attempts(&outcomes),
        [
            ("delivered".to_owned(), 0, 1),
            ("failed".to_owned(), 1, 3),
            ("delivered".to_owned(), 2, 1),
            ("delivered".to_owned(), 3, 1)
        ]
    );
    match &outcomes[1] {
        Payload::CallbackFailed(f) => {
            assert_eq!(f.event, "ringing");
            assert!(f.error.contains("503"), "{}", f.error);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        env.outbox_states(&call).await,
        [
            DeliveryState::Delivered,
            DeliveryState::Failed,
            DeliveryState::Delivered,
            DeliveryState::Delivered
        ]
    );
    // A URL that can never work is given up at once, not retried.
    let bad: Vec<(String, u32, u32)> = delivered_attempts(&env.outcomes(&bad_url).await);
    assert!(
        bad.iter()
            .all(|(kind, _, attempts)| kind == "failed" && *attempts == 1),
        "{bad:?}"
    );
    let counts: HashMap<u32, usize> =
        app.for_call(&call).iter().fold(HashMap::new(), |mut m, r| {
            *m.entry(r.sequence()).or_default() += 1;
            m
        });
    assert_eq!(counts[&1], 3, "exactly max_attempts attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_callbacks_go_out_in_order_with_the_calls_own_and_are_retried() {
    let env = Env::new().await;
    // The first request to the recording endpoint fails.
    let app = App::start(|r, _| {
        let first_recording = r.path == "/rec" && r.param("RecordingStatus") == Some("in-progress");
        Reply::Status(
            if first_recording && !REC_FAILED.swap(true, Ordering::SeqCst) {
                500
            } else {
                200
            },
        )
    })
    .await;
    static REC_FAILED: AtomicBool = AtomicBool::new(false);
    let call = env.call(NODE, &app.url("/status"), HttpMethod::Post).await;
    // A <Record> that ran between answer and completion (appended later: the stream order
    // decides, and these come after the call's completion here).
    let recording = RecordingSid::generate();
    let recording_url = format!(
        "https://dialtone.example/2010-04-01/Accounts/{}/Recordings/{recording}",
        env.account
    );
    let ev = |p: Payload| NewEvent::new(env.account.as_str(), p);
    env.log
        .append(
            call.as_str(),
            ExpectedVersion::Any,
            vec![
                ev(RecordingStarted {
                    url: Some(recording_url.clone()),
                    status_callback: Some(app.url("/rec?box=7")),
                    status_callback_method: HttpMethod::Get,
                    status_callback_events: vec!["in-progress completed".into()],
                    ..RecordingStarted::new(recording.clone(), "RecordVerb", 1)
                }
                .into()),
                ev(RecordingCompleted {
                    recording_sid: recording.clone(),
                    status: "completed".into(),
                    duration_ms: 7_400,
                    path: format!("recordings/{recording}.wav"),
                    channels: 1,
                    source: "RecordVerb".into(),
                    digits: Some("#".into()),
                    error_code: None,
                }
                .into()),
            ],
        )
        .await
        .unwrap();
    let deliverer = env.deliverer(config(6));
    eventually("six delivered callbacks", || {
        app.for_call(&call)
            .iter()
            .filter(|r| r.replied == Some(200))
            .count()
            == 6
    })
    .await;

    let received = app.for_call(&call);
    let order: Vec<(String, Option<u16>)> = received
        .iter()
        .map(|r| {
            (
                r.param("StatusCallbackEvent").unwrap().to_owned(),
                r.replied,
            )
        })
        .collect();
    let expected: Vec<(String, Option<u16>)> = [
        ("initiated", 200),
        ("ringing", 200),
        ("answered", 200),
        ("completed", 200),
        ("recording-in-progress", 500),
        ("recording-in-progress", 200),
        ("recording-completed", 200),
    ]
    .into_iter()
    .map(|(e, s)| (e.to_owned(), Some(s)))
    .collect();
    assert_eq!(
        order, expected,
        "one order per call, a retry holds the rest"
    );
    let recordings: Vec<&Received> = received.iter().filter(|r| r.path == "/rec").collect();
    for r in &recordings {
        assert_eq!(r.method, Method::GET);
        assert!(r.signed_with(&env.token), "signature of {r:?}");
        assert_eq!(r.param("box"), Some("7"), "the URL's own query is kept");
        assert_eq!(r.param("RecordingSid"), Some(recording.as_str()));
        assert_eq!(r.param("RecordingUrl"), Some(recording_url.as_str()));
        assert_eq!(r.param("RecordingSource"), Some("RecordVerb"));
        assert_eq!(r.param("AccountSid"), Some(env.account.as_str()));
        assert_eq!(r.param("SequenceNumber"), None);
        // Rows 4 and 5 of the call's outbox.
        let row = if r.param("RecordingStatus") == Some("completed") {
            5
        } else {
            4
        };
        assert_eq!(r.idempotency_token, idempotency_token(call.as_str(), row));
    }
    assert_eq!(recordings[2].param("RecordingDuration"), Some("8"));
    assert_eq!(recordings[2].param("ErrorCode"), Some("0"));

    eventually_async("six outcomes in the log", || async {
        env.outcomes(&call).await.len() == 6
    })
    .await;
    let outcomes = env.outcomes(&call).await;
    let names: Vec<(String, u32, u32)> = outcomes
        .iter()
        .map(|p| match p {
            Payload::CallbackDelivered(d) => (d.event.clone(), d.sequence_number, d.attempts),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names[4..],
        [
            ("recording-in-progress".to_owned(), 4, 2),
            ("recording-completed".to_owned(), 5, 1)
        ]
    );
    assert_eq!(
        env.outbox_states(&call).await,
        [DeliveryState::Delivered; 6],
        "the outcomes marked the recording rows too"
    );
    deliverer.shutdown().await;
}
