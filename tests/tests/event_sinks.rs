//! Webhook sinks end to end, on both log backends: `dialtone serve` as a process, a real
//! receiver that validates Twilio's JSON-body signature, fails its first deliveries, and sees
//! the server restarted in between. Every event arrives at least once, in log order; the
//! outcomes are on the log and in the Sinks API.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use dialtone_tests::{eventually, Backend, Dialtone};
use serde_json::Value;

/// A sink receiver: answers 500 to its first `fail_first` requests, 200 after; keeps every
/// batch it accepted, checking each request's signature.
#[derive(Clone, Default)]
struct Receiver {
    inner: Arc<Mutex<ReceiverState>>,
}

#[derive(Default)]
struct ReceiverState {
    token: String,
    base: String,
    fail_first: usize,
    requests: usize,
    accepted: Vec<Vec<Value>>,
    bad_signatures: usize,
}

async fn receive(
    State(receiver): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut state = receiver.inner.lock().unwrap();
    state.requests += 1;
    let url = format!("{}{}", state.base, uri);
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !dialtone_voice::signature::validate_json_body(&state.token, &url, &body, signature) {
        state.bad_signatures += 1;
        return StatusCode::FORBIDDEN;
    }
    if state.requests <= state.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let batch: Vec<Value> = serde_json::from_slice(&body).expect("a JSON array of CloudEvents");
    state.accepted.push(batch);
    StatusCode::OK
}

impl Receiver {
    async fn start(fail_first: usize) -> (Receiver, SocketAddr) {
        let receiver = Receiver::default();
        receiver.inner.lock().unwrap().fail_first = fail_first;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        receiver.inner.lock().unwrap().base = format!("http://{addr}");
        let app = Router::new()
            .route("/events", post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, addr)
    }

    fn requests(&self) -> usize {
        self.inner.lock().unwrap().requests
    }

    fn accepted_events(&self) -> Vec<Value> {
        self.inner
            .lock()
            .unwrap()
            .accepted
            .iter()
            .flatten()
            .cloned()
            .collect()
    }
}

async fn sink_survives_failures_and_a_restart(backend: Backend) {
    let mut server = Dialtone::start_with(
        backend,
        "[sinks]\nretry_initial_ms = 300\nretry_max_ms = 600\nmax_attempts = 1000\n",
    )
    .await;
    let (receiver, addr) = Receiver::start(3).await;
    receiver.inner.lock().unwrap().token = server.auth_token.clone();

    let config =
        format!(r#"{{"destination":"http://{addr}/events","method":"POST","batch_events":true}}"#);
    let (status, sink) = server
        .post_v1(
            "Sinks",
            &[
                ("Description", "number audit"),
                ("SinkType", "webhook"),
                ("SinkConfiguration", &config),
            ],
        )
        .await;
    assert_eq!(status, 201, "{sink}");
    let sink_sid = sink["sid"].as_str().unwrap().to_owned();
    assert!(sink_sid.starts_with("DG"));
    assert_eq!(sink["status"], "active");
    let (status, subscription) = server
        .post_v1(
            "Subscriptions",
            &[
                ("Description", "numbers"),
                ("SinkSid", &sink_sid),
                (
                    "Types",
                    r#"{"type":"dialtone.number.*","schema_version":1}"#,
                ),
            ],
        )
        .await;
    assert_eq!(status, 201, "{subscription}");
    assert_eq!(subscription["sink_sid"], sink_sid.as_str());

    // Events: three numbers provisioned, then (while the receiver fails) a restart, then two
    // more numbers and an update.
    let mut numbers = Vec::new();
    for n in 0..3 {
        let number = format!("+1415555{:04}", 2100 + n);
        let body = server
            .provision(&number, "http://127.0.0.1:9/voice", None)
            .await;
        numbers.push(body["sid"].as_str().unwrap().to_owned());
    }
    eventually(30, "the first failed delivery", || async {
        (receiver.requests() >= 1).then_some(())
    })
    .await;
    server.restart().await;
    for n in 3..5 {
        let number = format!("+1415555{:04}", 2100 + n);
        let body = server
            .provision(&number, "http://127.0.0.1:9/voice", None)
            .await;
        numbers.push(body["sid"].as_str().unwrap().to_owned());
    }
    let (status, _) = server
        .post(
            &format!("IncomingPhoneNumbers/{}.json", numbers[0]),
            &[("FriendlyName", "renamed")],
        )
        .await;
    assert_eq!(status, 200);

    // Every event arrives, at least once, in log order.
    let expected: Vec<(String, String)> = numbers
        .iter()
        .map(|sid| (sid.clone(), "dialtone.number.provisioned".to_owned()))
        .chain([(numbers[0].clone(), "dialtone.number.updated".to_owned())])
        .collect();
    let events = eventually(60, "every number event at the sink", || async {
        let events = receiver.accepted_events();
        let unique = dedup(&events);
        (unique.len() >= expected.len()).then_some(events)
    })
    .await;
    let unique = dedup(&events);
    let got: Vec<(String, String)> = unique
        .iter()
        .map(|e| {
            (
                e["subject"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Nothing missing; each stream's events in its order. The embedded log has one global
    // order, which the sink keeps; Kafka orders only per partition (per stream).
    let mut sorted_got = got.clone();
    sorted_got.sort();
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    assert_eq!(
        sorted_got, sorted_expected,
        "nothing missing, nothing extra"
    );
    let first = |t: &str| {
        got.iter()
            .position(|(s, ty)| *s == numbers[0] && ty == t)
            .unwrap()
    };
    assert!(
        first("dialtone.number.provisioned") < first("dialtone.number.updated"),
        "per-stream order: {got:?}"
    );
    if backend == Backend::Sqlite {
        assert_eq!(got, expected, "the log's order");
    }
    assert!(
        receiver.requests() >= 4,
        "the first 3 attempts failed, then retried"
    );
    assert_eq!(receiver.inner.lock().unwrap().bad_signatures, 0);
    // Redeliveries (at least once) keep the log's order: the ids never go backwards except
    // to repeat a suffix already seen.
    for event in &events {
        assert!(event["type"]
            .as_str()
            .unwrap()
            .starts_with("dialtone.number."));
        assert_eq!(event["accountsid"], server.account_sid.as_str());
    }

    // The outcomes are recorded: the API counts them, the log holds them.
    let sink_now = eventually(30, "the delivery counts", || async {
        let (_, sink) = server.get_v1(&format!("Sinks/{sink_sid}")).await;
        (sink["delivery"]["delivered_events"].as_u64() >= Some(expected.len() as u64))
            .then_some(sink)
    })
    .await;
    assert_eq!(sink_now["delivery"]["last_status"], 200);
    let (status, list) = server.get_v1("Sinks?InUse=true").await;
    assert_eq!(status, 200);
    assert_eq!(list["sinks"].as_array().unwrap().len(), 1);
    assert_eq!(list["meta"]["key"], "sinks");
    let (_, subscribed) = server
        .get_v1(&format!(
            "Subscriptions/{}/SubscribedEvents",
            subscription["sid"].as_str().unwrap()
        ))
        .await;
    assert_eq!(subscribed["types"][0]["type"], "dialtone.number.*");
}

/// Distinct events by id, first occurrence order.
fn dedup(events: &[Value]) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    events
        .iter()
        .filter(|e| seen.insert(e["id"].as_str().unwrap().to_owned()))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_sink_survives_failures_and_a_restart() {
    sink_survives_failures_and_a_restart(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_sink_survives_failures_and_a_restart() {
    sink_survives_failures_and_a_restart(Backend::Kafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_sink_never_delays_another_and_bad_sinks_are_refused() {
    let server = Dialtone::start_with(
        Backend::Sqlite,
        "[sinks]\nretry_initial_ms = 200\nretry_max_ms = 200\nmax_attempts = 2\ntimeout_ms = 1000\n",
    )
    .await;
    let (healthy, healthy_addr) = Receiver::start(0).await;
    healthy.inner.lock().unwrap().token = server.auth_token.clone();
    let create = |destination: String| {
        let server = &server;
        async move {
            let config = format!(r#"{{"destination":"{destination}"}}"#);
            server
                .post_v1(
                    "Sinks",
                    &[
                        ("Description", "x"),
                        ("SinkType", "webhook"),
                        ("SinkConfiguration", &config),
                    ],
                )
                .await
        }
    };
    // A sink nobody answers (connection refused), and a healthy one.
    let (status, dead) = create("http://127.0.0.1:9/events".into()).await;
    assert_eq!(status, 201);
    let (status, alive) = create(format!("http://{healthy_addr}/events")).await;
    assert_eq!(status, 201);
    for sink in [&dead, &alive] {
        let (status, body) = server
            .post_v1(
                "Subscriptions",
                &[
                    ("Description", "calls"),
                    ("SinkSid", sink["sid"].as_str().unwrap()),
                    ("Types", "dialtone.number.provisioned"),
                ],
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    server
        .provision("+14155552200", "http://127.0.0.1:9/voice", None)
        .await;
    eventually(20, "the healthy sink's delivery", || async {
        (!healthy.accepted_events().is_empty()).then_some(())
    })
    .await;
    // The dead one gives up after its attempts, recorded as failed.
    let failed = eventually(30, "the dead sink's give-up", || async {
        let (_, sink) = server
            .get_v1(&format!("Sinks/{}", dead["sid"].as_str().unwrap()))
            .await;
        (sink["delivery"]["failed_events"].as_u64() >= Some(1)).then_some(sink)
    })
    .await;
    assert!(
        failed["delivery"]["last_error"]
            .as_str()
            .unwrap()
            .contains("connection"),
        "{failed}"
    );

    // Bad input.
    let (status, body) = create("ftp://example.com/x".into()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("destination"));
    let (status, _) = server
        .post_v1(
            "Sinks",
            &[
                ("Description", "x"),
                ("SinkType", "kinesis"),
                ("SinkConfiguration", "{}"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    let (status, body) = server
        .post_v1(
            "Subscriptions",
            &[
                ("Description", "x"),
                ("SinkSid", alive["sid"].as_str().unwrap()),
                ("Types", "dialtone.nonsense.*"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("Types"));
    let (status, _) = server
        .get_v1("Sinks/DG00000000000000000000000000000000")
        .await;
    assert_eq!(status, 404);
    // Deleting a sink takes its subscriptions with it.
    let dead_sid = dead["sid"].as_str().unwrap();
    let deleted = reqwest::Client::new()
        .delete(format!(
            "{}/v1/Accounts/{}/Sinks/{dead_sid}",
            server.http_url, server.account_sid
        ))
        .basic_auth(&server.account_sid, Some(&server.auth_token))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (_, subscriptions) = server
        .get_v1(&format!("Subscriptions?SinkSid={dead_sid}"))
        .await;
    assert_eq!(subscriptions["subscriptions"].as_array().unwrap().len(), 0);
}
