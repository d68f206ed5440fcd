//! `GET /v1/Accounts/{AC}/Events` against the real router, a real hub and both log backends:
//! resume without gap or duplicate while 32 writers append, account isolation, cut-off of a
//! slow client (the others keep up), filters, heartbeats, WebSocket, bad input.
//!
//! The Kafka cases need a broker (`infra/kafka.sh start`, `DIALTONE_KAFKA_BROKERS`);
//! `DIALTONE_SKIP_KAFKA=1` turns them into no-ops that say so.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use dialtone_api::{router, ApiState};
use dialtone_events::conformance::marker;
use dialtone_events::kafka::{KafkaConfig, KafkaLog};
use dialtone_events::payload::VerbStarted;
use dialtone_events::sid::{AccountSid, CallSid};
use dialtone_events::sqlite::SqliteLog;
use dialtone_events::{EventLog, ExpectedVersion, NewEvent};
use dialtone_projections::*;
use dialtone_streams::{EventHub, HubConfig};
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Kafka,
}

fn kafka_skipped() -> bool {
    if std::env::var("DIALTONE_SKIP_KAFKA").is_ok_and(|v| v == "1") {
        eprintln!("DIALTONE_SKIP_KAFKA=1: this Kafka test checks nothing");
        return true;
    }
    false
}

struct Server {
    _dir: tempfile::TempDir,
    base: String,
    log: Arc<dyn EventLog>,
    _runner: ProjectionRunner,
    a: (String, String),
    b: (String, String),
}

async fn open_log(backend: Backend, dir: &std::path::Path) -> Arc<dyn EventLog> {
    match backend {
        Backend::Sqlite => Arc::new(SqliteLog::open(dir.join("events.db"), "node-1").unwrap()),
        Backend::Kafka => {
            let config = KafkaConfig {
                brokers: std::env::var("DIALTONE_KAFKA_BROKERS")
                    .unwrap_or_else(|_| "127.0.0.1:9092".into()),
                topic_prefix: format!("streams-{}", uuid_like()),
                partitions: 3,
                ..KafkaConfig::new("", "node-1")
            };
            Arc::new(
                KafkaLog::open(config)
                    .await
                    .expect("a Kafka broker (infra/kafka.sh start)"),
            )
        }
    }
}

fn uuid_like() -> String {
    CallSid::generate().as_str()[2..18].to_owned()
}

impl Server {
    async fn start(backend: Backend, buffer: usize) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(backend, dir.path()).await;
        let db = dir.path().join(READ_MODELS_FILE);
        let accounts = AccountDirectory::default();
        let numbers = NumberDirectory::default();
        let runner = ProjectionRunner::start(
            log.clone(),
            &db,
            standard_projections(&accounts, &numbers, RateTable::default()),
            RunnerConfig::default(),
        )
        .await
        .unwrap();
        let secret = b"test node secret";
        let a = create_account(log.as_ref(), secret, "Alpha").await.unwrap();
        let b = create_account(log.as_ref(), secret, "Beta").await.unwrap();
        runner.catch_up(log.as_ref()).await.unwrap();
        let hub = EventHub::start(
            log.clone(),
            HubConfig {
                buffer,
                ..HubConfig::default()
            },
        )
        .await
        .unwrap();
        let state = ApiState::new(
            log.clone(),
            ReadModels::new(&db),
            accounts,
            numbers,
            runner.handle(),
            "node-1",
        )
        .with_event_hub(hub)
        .with_stream_heartbeat(Duration::from_millis(300));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        Server {
            _dir: dir,
            base,
            log,
            _runner: runner,
            a: (a.0.to_string(), a.1),
            b: (b.0.to_string(), b.1),
        }
    }

    fn events_url(&self, account: &str, query: &str) -> String {
        format!("{}/v1/Accounts/{account}/Events{query}", self.base)
    }

    async fn connect(
        &self,
        (sid, token): &(String, String),
        query: &str,
        last_event_id: Option<&str>,
    ) -> SseReader {
        let mut request = reqwest::Client::new()
            .get(self.events_url(sid, query))
            .basic_auth(sid, Some(token));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        SseReader {
            stream: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
        }
    }

    async fn status_of(&self, (sid, token): &(String, String), query: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .get(self.events_url(sid, query))
            .basic_auth(sid, Some(token))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[derive(Debug)]
enum Frame {
    Event { id: String, event: Value },
    Comment(String),
}

struct SseReader {
    stream:
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send>>,
    buffer: Vec<u8>,
}

impl SseReader {
    /// The next message or comment; `None` when the server ended the stream.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = find_blank_line(&self.buffer) {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let (mut id, mut data, mut comment) = (None, String::new(), None);
                for line in text.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        comment = Some(c.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Some(id) = id {
                    return Some(Frame::Event {
                        id,
                        event: serde_json::from_str(&data).unwrap(),
                    });
                }
                if let Some(comment) = comment {
                    return Some(Frame::Comment(comment));
                }
                continue;
            }
            match self.stream.next().await {
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                _ => return None,
            }
        }
    }

    /// The next event, skipping heartbeats; `None` on a final comment or the end.
    async fn next_event(&mut self, seconds: u64) -> Option<(String, Value)> {
        loop {
            match tokio::time::timeout(Duration::from_secs(seconds), self.next()).await {
                Ok(Some(Frame::Event { id, event })) => return Some((id, event)),
                Ok(Some(Frame::Comment(c))) if c == "heartbeat" => continue,
                Ok(Some(Frame::Comment(c))) => panic!("unexpected comment {c:?}"),
                Ok(None) => return None,
                Err(_) => panic!("no event within {seconds} s"),
            }
        }
    }
}

fn find_blank_line(buffer: &[u8]) -> Option<usize> {
    buffer.windows(2).position(|w| w == b"\n\n")
}

/// What a client saw: per stream, the sequences in arrival order; and every event id.
#[derive(Default)]
struct Seen {
    by_stream: BTreeMap<String, Vec<u64>>,
    ids: Vec<String>,
}

impl Seen {
    fn add(&mut self, event: &Value, account: &str) {
        assert_eq!(
            event["accountsid"], account,
            "another account's event leaked"
        );
        self.by_stream
            .entry(event["subject"].as_str().unwrap().to_owned())
            .or_default()
            .push(event["sequence"].as_u64().unwrap());
        self.ids.push(event["id"].as_str().unwrap().to_owned());
    }

    fn assert_complete(&self, streams: &[String], per_stream: u64) {
        let unique: HashSet<&String> = self.ids.iter().collect();
        assert_eq!(unique.len(), self.ids.len(), "an event arrived twice");
        for stream in streams {
            let sequences = self.by_stream.get(stream).cloned().unwrap_or_default();
            let expected: Vec<u64> = (1..=per_stream).collect();
            assert_eq!(
                sequences, expected,
                "stream {stream}: gap, duplicate or reorder"
            );
        }
    }
}

const WRITERS: usize = 32;
const PER_WRITER: u64 = 80;

/// 32 writers, one call stream each, alternating between the two accounts, paced so the
/// traffic lasts a couple of seconds. Returns each account's streams.
fn start_writers(server: &Server) -> (Vec<String>, Vec<String>, tokio::task::JoinSet<()>) {
    let (mut a_streams, mut b_streams) = (Vec::new(), Vec::new());
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let account = if w % 2 == 0 { &server.a.0 } else { &server.b.0 };
        let call = CallSid::generate();
        if w % 2 == 0 {
            a_streams.push(call.to_string());
        } else {
            b_streams.push(call.to_string());
        }
        let account = AccountSid::parse(account).unwrap();
        let log = server.log.clone();
        tasks.spawn(async move {
            for i in 0..PER_WRITER {
                log.append(
                    call.as_str(),
                    ExpectedVersion::Exact(i),
                    vec![marker(&account, i as u32, &format!("w{w}"))],
                )
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
    }
    (a_streams, b_streams, tasks)
}

async fn resume_sees_every_event_once_in_order(backend: Backend) {
    let server = Server::start(backend, 100_000).await;
    let (a_streams, b_streams, mut writers) = start_writers(&server);
    let total = a_streams.len() as u64 * PER_WRITER;
    // Connect mid-traffic, from the beginning of the log.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut seen = Seen::default();
    let mut client = server.connect(&server.a, "?After=0", None).await;
    let mut last_id = String::new();
    while (seen.ids.len() as u64) < total / 3 {
        let (id, event) = client.next_event(20).await.expect("stream ended");
        if event["type"] == "dialtone.call.verb.started" {
            seen.add(&event, &server.a.0);
        }
        last_id = id;
    }
    drop(client);
    // Some traffic while disconnected, then resume where it left off. `After=0` in the URL is
    // what EventSource keeps: Last-Event-ID wins.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut client = server.connect(&server.a, "?After=0", Some(&last_id)).await;
    // Meanwhile an account B client sees only B's events.
    let mut other = server
        .connect(&server.b, "?After=0&Types=dialtone.call.*", None)
        .await;
    while (seen.ids.len() as u64) < total {
        let (_, event) = client.next_event(20).await.expect("stream ended");
        if event["type"] == "dialtone.call.verb.started" {
            seen.add(&event, &server.a.0);
        }
    }
    while writers.join_next().await.is_some() {}
    seen.assert_complete(&a_streams, PER_WRITER);
    // Nothing more for A: its next frames are heartbeats only.
    let quiet = tokio::time::timeout(Duration::from_millis(800), async {
        loop {
            match client.next().await {
                Some(Frame::Comment(c)) if c == "heartbeat" => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "an extra frame arrived: {quiet:?}");

    let mut other_seen = Seen::default();
    while (other_seen.ids.len() as u64) < b_streams.len() as u64 * PER_WRITER {
        let (_, event) = other.next_event(20).await.expect("stream ended");
        other_seen.add(&event, &server.b.0);
    }
    other_seen.assert_complete(&b_streams, PER_WRITER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_resume_sees_every_event_once_in_order() {
    resume_sees_every_event_once_in_order(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_resume_sees_every_event_once_in_order() {
    if kafka_skipped() {
        return;
    }
    resume_sees_every_event_once_in_order(Backend::Kafka).await;
}

/// A raw HTTP/1.1 SSE request on a socket with a tiny receive buffer, so that a client that
/// does not read really stops the server's writes.
async fn raw_sse(
    server: &Server,
    query: &str,
    last_event_id: Option<&str>,
) -> tokio::net::TcpStream {
    let address: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    let credentials = base64_basic(&server.a.0, &server.a.1);
    let extra = last_event_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /v1/Accounts/{}/Events{query} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Basic {credentials}\r\nAccept: text/event-stream\r\n{extra}\r\n",
        server.a.0
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

fn base64_basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads a raw SSE response to its end: event ids and data, and the comments.
async fn read_raw_to_end(mut stream: tokio::net::TcpStream) -> (Vec<(String, Value)>, Vec<String>) {
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the cut-off stream did not end"),
        }
        // A chunked response ends with a zero-length chunk.
        if bytes.ends_with(b"\r\n0\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // Undo chunked transfer encoding: drop the chunk-size lines.
    let mut unchunked = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        unchunked.push_str(&after[..size.min(after.len())]);
        rest = after.get(size + 2..).unwrap_or("");
    }
    let (mut events, mut comments) = (Vec::new(), Vec::new());
    for block in unchunked.split("\n\n") {
        let (mut id, mut data) = (None, None);
        for line in block.lines() {
            if let Some(c) = line.strip_prefix(':') {
                comments.push(c.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data = Some(v.trim().to_owned());
            }
        }
        if let (Some(id), Some(data)) = (id, data) {
            events.push((id, serde_json::from_str(&data).unwrap()));
        }
    }
    (events, comments)
}

async fn slow_client_is_cut_off_and_others_keep_up(backend: Backend) {
    const EVENTS: u64 = 12_000;
    let server = Server::start(backend, 500).await;
    let account = AccountSid::parse(&server.a.0).unwrap();
    let call = CallSid::generate();
    let slow = raw_sse(&server, "?Types=dialtone.call.verb.started", None).await;
    let mut fast = server
        .connect(&server.a, "?Types=dialtone.call.verb.started", None)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ~1 KiB events: far more than the socket buffers hold, so the slow client's writes stop.
    let log = server.log.clone();
    let writer = tokio::spawn(async move {
        let filler = "x".repeat(1000);
        for i in 0..EVENTS / 100 {
            let events = (0..100)
                .map(|j| {
                    NewEvent::new(
                        account.as_str(),
                        VerbStarted {
                            index: (i * 100 + j) as u32,
                            verb: filler.clone(),
                        },
                    )
                })
                .collect();
            log.append(call.as_str(), ExpectedVersion::Any, events)
                .await
                .unwrap();
        }
    });
    // The fast client gets everything while the slow one reads nothing.
    let mut fast_sequences = Vec::new();
    while (fast_sequences.len() as u64) < EVENTS {
        let (_, event) = fast
            .next_event(30)
            .await
            .expect("the fast client was cut off");
        fast_sequences.push(event["sequence"].as_u64().unwrap());
    }
    assert_eq!(fast_sequences, (1..=EVENTS).collect::<Vec<_>>());
    writer.await.unwrap();

    // The slow client now reads: a prefix of the events, then a final comment naming the
    // position to resume from; the stream has ended.
    let (events, comments) = read_raw_to_end(slow).await;
    let last = comments
        .iter()
        .find(|c| c.starts_with("cut off"))
        .unwrap_or_else(|| panic!("no cut-off comment; comments {comments:?}"));
    assert!((events.len() as u64) < EVENTS, "{} events", events.len());
    let resume = last
        .split("resume after position ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the comment names a position");
    let sequences: Vec<u64> = events
        .iter()
        .map(|(_, e)| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>());
    if let Some((id, _)) = events.last() {
        assert_eq!(
            id, resume,
            "the resume position is the last delivered event's id"
        );
    }
    // Resuming there delivers the rest, exactly.
    let mut again = server
        .connect(&server.a, "?Types=dialtone.call.verb.started", Some(resume))
        .await;
    let mut next = sequences.len() as u64 + 1;
    while next <= EVENTS {
        let (_, event) = again.next_event(30).await.expect("resumed stream ended");
        assert_eq!(event["sequence"].as_u64().unwrap(), next);
        next += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_slow_client_is_cut_off_and_others_keep_up() {
    slow_client_is_cut_off_and_others_keep_up(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_slow_client_is_cut_off_and_others_keep_up() {
    if kafka_skipped() {
        return;
    }
    slow_client_is_cut_off_and_others_keep_up(Backend::Kafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filters_secrets_heartbeats_and_bad_input() {
    let server = Server::start(Backend::Sqlite, 10_000).await;
    // Account events carry no secrets.
    let mut accounts = server
        .connect(&server.a, "?After=0&Types=dialtone.account.*", None)
        .await;
    let (_, created) = accounts.next_event(10).await.unwrap();
    assert_eq!(created["type"], "dialtone.account.created");
    assert_eq!(created["data"]["friendly_name"], "Alpha");
    assert!(created["data"].get("token_sha256").is_none(), "{created}");
    assert!(created["data"].get("token_salt").is_none(), "{created}");
    // Heartbeats keep an idle stream open.
    let heartbeat = tokio::time::timeout(Duration::from_secs(5), accounts.next())
        .await
        .unwrap();
    assert!(matches!(heartbeat, Some(Frame::Comment(ref c)) if c == "heartbeat"));

    // Subject and exact types select; another account's stream in a filter leaks nothing.
    let account_b = AccountSid::parse(&server.b.0).unwrap();
    let account_a = AccountSid::parse(&server.a.0).unwrap();
    let (b_call, a_call) = (CallSid::generate(), CallSid::generate());
    for (call, account) in [(&b_call, &account_b), (&a_call, &account_a)] {
        server
            .log
            .append(
                call.as_str(),
                ExpectedVersion::NoStream,
                (0..3).map(|i| marker(account, i, "f")).collect(),
            )
            .await
            .unwrap();
    }
    let mut snooping = server
        .connect(&server.a, &format!("?After=0&Subject={b_call}"), None)
        .await;
    let leaked = tokio::time::timeout(Duration::from_millis(700), async {
        loop {
            match snooping.next().await {
                Some(Frame::Comment(_)) => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(
        leaked.is_err(),
        "another account's stream leaked: {leaked:?}"
    );
    let mut own = server
        .connect(
            &server.a,
            &format!("?After=0&Subject={a_call}&Types=dialtone.call.verb.started"),
            None,
        )
        .await;
    for sequence in 1..=3 {
        let (_, event) = own.next_event(10).await.unwrap();
        assert_eq!(event["subject"], a_call.as_str());
        assert_eq!(event["sequence"], sequence);
    }

    // Bad input: 400 with a Twilio error body naming the parameter.
    for (query, name) in [
        ("?Colour=red", "Colour"),
        ("?After=abc", "After"),
        ("?After=kAQI", "After"),
        ("?Types=dialtone.call.complete", "Types"),
        ("?Types=com.twilio.*", "Types"),
        ("?Subject=CA12", "Subject"),
    ] {
        let (status, body) = server.status_of(&server.a, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["code"], 20001, "{query}");
        assert!(
            body["message"].as_str().unwrap().contains(name),
            "{query}: {body}"
        );
    }
    let response = reqwest::Client::new()
        .get(server.events_url(&server.a.0, ""))
        .basic_auth(&server.a.0, Some(&server.a.1))
        .header("Last-Event-ID", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Another account's path: 404, as for every resource.
    let (status, _) = server
        .status_of(&(server.b.0.clone(), server.a.1.clone()), "")
        .await;
    assert_eq!(status, 401);
    let response = reqwest::Client::new()
        .get(server.events_url(&server.b.0, ""))
        .basic_auth(&server.a.0, Some(&server.a.1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_delivers_the_same_events_and_resumes() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let server = Server::start(Backend::Sqlite, 10_000).await;
    let account = AccountSid::parse(&server.a.0).unwrap();
    let call = CallSid::generate();
    server
        .log
        .append(
            call.as_str(),
            ExpectedVersion::NoStream,
            (0..5).map(|i| marker(&account, i, "ws")).collect(),
        )
        .await
        .unwrap();
    let connect = |query: String| {
        let url = server
            .events_url(&server.a.0, &query)
            .replace("http://", "ws://");
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Basic {}", base64_basic(&server.a.0, &server.a.1))
                .parse()
                .unwrap(),
        );
        async move { tokio_tungstenite::connect_async(request).await.unwrap().0 }
    };
    let mut socket = connect("?After=0&Types=dialtone.call.verb.started".into()).await;
    let mut positions = Vec::new();
    while positions.len() < 5 {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(frame["event"]["subject"], call.as_str());
                assert_eq!(frame["event"]["sequence"], positions.len() as u64 + 1);
                positions.push(frame["position"].as_str().unwrap().to_owned());
            }
            Some(Ok(_)) => {}
            other => panic!("websocket ended: {other:?}"),
        }
    }
    drop(socket);
    let mut socket = connect(format!(
        "?After={}&Types=dialtone.call.verb.started",
        positions[2]
    ))
    .await;
    let mut rest = Vec::new();
    while rest.len() < 2 {
        if let Some(Ok(Message::Text(text))) = socket.next().await {
            let frame: Value = serde_json::from_str(&text).unwrap();
            rest.push(frame["event"]["sequence"].as_u64().unwrap());
        }
    }
    assert_eq!(rest, vec![4, 5]);
}
