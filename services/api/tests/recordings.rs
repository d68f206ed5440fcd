//! Recordings (and conferences) over the real router: a temp data dir with a SQLite log, a running projection
//! runner, real WAV files, and reqwest as the client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dialtone_api::{router, ApiState};
use dialtone_events::payload::{
    CallInitiated, ConferenceEnded, ConferenceStarted, Direction, ParticipantJoined,
    ParticipantLeft, Payload, RecordingCompleted, RecordingStarted,
};
use dialtone_events::sid::{AccountSid, CallSid, ConferenceSid, RecordingSid};
use dialtone_events::sqlite::SqliteLog;
use dialtone_events::{EventLog, ExpectedVersion, NewEvent};
use dialtone_projections::*;
use reqwest::StatusCode;
use serde_json::Value;
use time::OffsetDateTime;

struct Account {
    sid: AccountSid,
    token: String,
}

struct Server {
    dir: tempfile::TempDir,
    base: String,
    log: Arc<dyn EventLog>,
    runner: ProjectionRunner,
    client: reqwest::Client,
    a: Account,
    b: Account,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> =
            Arc::new(SqliteLog::open(dir.path().join("events.db"), "node-1").unwrap());
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
        let (sid_a, token_a) = create_account(log.as_ref(), secret, "Alpha").await.unwrap();
        let (sid_b, token_b) = create_account(log.as_ref(), secret, "Beta").await.unwrap();
        runner.catch_up(log.as_ref()).await.unwrap();
        let state = ApiState::new(
            log.clone(),
            ReadModels::new(&db),
            accounts,
            numbers,
            runner.handle(),
            "node-1",
        )
        .with_data_dir(dir.path())
        .with_public_url("https://dialtone.example.com/");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        Server {
            dir,
            base,
            log,
            runner,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            a: Account {
                sid: sid_a,
                token: token_a,
            },
            b: Account {
                sid: sid_b,
                token: token_b,
            },
        }
    }

    fn url(&self, account: &Account, rest: &str) -> String {
        format!("{}/2010-04-01/Accounts/{}/{rest}", self.base, account.sid)
    }

    async fn get(&self, who: &Account, url: &str) -> reqwest::Response {
        self.client
            .get(url)
            .basic_auth(who.sid.as_str(), Some(&who.token))
            .send()
            .await
            .unwrap()
    }

    async fn get_json(&self, who: &Account, url: &str) -> (StatusCode, Value) {
        let response = self.get(who, url).await;
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn delete(&self, who: &Account, url: &str) -> StatusCode {
        self.client
            .delete(url)
            .basic_auth(who.sid.as_str(), Some(&who.token))
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn append(
        &self,
        stream: &str,
        account: &AccountSid,
        events: Vec<(Payload, OffsetDateTime)>,
    ) {
        let events = events
            .into_iter()
            .map(|(p, at)| NewEvent::new(account.as_str(), p).at(at))
            .collect();
        let appended = self
            .log
            .append(stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
        self.runner
            .handle()
            .wait_for(&appended.positions)
            .await
            .unwrap();
    }

    /// A call of `account` with one completed recording whose WAV is written to
    /// `recordings/<RE>.wav` in the data dir. Returns the call, the recording and the bytes.
    async fn recorded_call(
        &self,
        account: &AccountSid,
        at: OffsetDateTime,
        samples: usize,
    ) -> (CallSid, RecordingSid, Vec<u8>) {
        let call = CallSid::generate();
        let recording = RecordingSid::generate();
        let relative = format!("recordings/{recording}.wav");
        let bytes = write_wav(&self.dir.path().join(&relative), samples);
        self.append(
            call.as_str(),
            account,
            vec![
                (initiated(), at),
                (
                    RecordingStarted::new(recording.clone(), "RecordVerb", 1).into(),
                    at + time::Duration::seconds(1),
                ),
                (
                    RecordingCompleted {
                        recording_sid: recording.clone(),
                        status: "completed".into(),
                        duration_ms: (samples as u64) * 1000 / 8000,
                        path: relative,
                        channels: 1,
                        source: "RecordVerb".into(),
                        digits: Some("#".into()),
                        error_code: None,
                    }
                    .into(),
                    at + time::Duration::seconds(5),
                ),
            ],
        )
        .await;
        (call, recording, bytes)
    }
}

fn initiated() -> Payload {
    CallInitiated {
        direction: Direction::Inbound,
        from: "+15551230000".into(),
        to: "+15559870000".into(),
        owner_node: "node-1".into(),
        sip_call_id: None,
        source_addr: None,
        phone_number_sid: None,
        parent_call_sid: None,
        forwarded_from: None,
        application: Default::default(),
    }
    .into()
}

/// Writes an 8 kHz mono 16-bit WAV of a ramp and returns the file's bytes.
fn write_wav(path: &std::path::Path, samples: usize) -> Vec<u8> {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..samples {
        writer.write_sample(((i % 2000) as i16 - 1000) * 8).unwrap();
    }
    writer.finalize().unwrap();
    std::fs::read(path).unwrap()
}

fn sids(list: &Value) -> Vec<String> {
    list["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sid"].as_str().unwrap().to_owned())
        .collect()
}

const DAY1: OffsetDateTime = time::macros::datetime!(2025-03-10 09:00:00 UTC);
const DAY2: OffsetDateTime = time::macros::datetime!(2025-03-11 09:00:00 UTC);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_list_fetch_download_and_delete() {
    let server = Server::start().await;
    let a = &server.a.sid;
    let (call1, re1, wav1) = server.recorded_call(a, DAY1, 8000 * 4 + 1600).await;
    let (call2, re2, wav2) = server.recorded_call(a, DAY2, 8000).await;

    // List: newest first, with Twilio's envelope.
    let (status, list) = server
        .get_json(&server.a, &server.url(&server.a, "Recordings.json"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sids(&list), [re2.to_string(), re1.to_string()]);
    assert_eq!(list["page"], 0);
    assert_eq!(list["next_page_uri"], Value::Null);
    assert_eq!(
        list["uri"],
        format!("/2010-04-01/Accounts/{a}/Recordings.json?PageSize=50&Page=0")
    );

    // One recording in Twilio's JSON shape.
    let (status, json) = server
        .get_json(
            &server.a,
            &server.url(&server.a, &format!("Recordings/{re1}.json")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["sid"], re1.as_str());
    assert_eq!(json["account_sid"], a.as_str());
    assert_eq!(json["call_sid"], call1.as_str());
    assert_eq!(json["conference_sid"], Value::Null);
    assert_eq!(json["duration"], "4", "a string of whole seconds");
    assert_eq!(json["status"], "completed");
    assert_eq!(json["channels"], 1);
    assert_eq!(json["source"], "RecordVerb");
    assert_eq!(json["track"], "inbound");
    assert_eq!(json["price"], Value::Null);
    assert_eq!(json["price_unit"], "USD");
    assert_eq!(json["error_code"], Value::Null);
    assert_eq!(json["encryption_details"], Value::Null);
    assert_eq!(json["api_version"], "2010-04-01");
    assert_eq!(json["start_time"], "Mon, 10 Mar 2025 09:00:01 +0000");
    assert_eq!(json["date_created"], "Mon, 10 Mar 2025 09:00:01 +0000");
    assert_eq!(json["date_updated"], "Mon, 10 Mar 2025 09:00:05 +0000");
    let base = format!("/2010-04-01/Accounts/{a}/Recordings/{re1}");
    assert_eq!(json["uri"], format!("{base}.json"));
    assert_eq!(
        json["media_url"],
        format!("https://dialtone.example.com{base}")
    );
    assert_eq!(
        json["subresource_uris"]["transcriptions"],
        format!("{base}/Transcriptions.json")
    );

    // Media: with `.wav` and without extension, the file's bytes as audio/x-wav.
    for suffix in [".wav", ""] {
        let response = server
            .get(
                &server.a,
                &server.url(&server.a, &format!("Recordings/{re1}{suffix}")),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "audio/x-wav");
        assert_eq!(
            response.headers()["content-length"],
            wav1.len().to_string().as_str()
        );
        assert_eq!(response.bytes().await.unwrap().as_ref(), wav1.as_slice());
    }
    let mp3 = server
        .get(
            &server.a,
            &server.url(&server.a, &format!("Recordings/{re1}.mp3")),
        )
        .await;
    assert_eq!(mp3.status(), StatusCode::NOT_FOUND);
    // Media needs credentials like everything else.
    let anonymous = server
        .client
        .get(server.url(&server.a, &format!("Recordings/{re1}.wav")))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Filters and the call-scoped list.
    let filtered = |q: &str| server.url(&server.a, &format!("Recordings.json?{q}"));
    let (_, by_call) = server
        .get_json(&server.a, &filtered(&format!("CallSid={call1}")))
        .await;
    assert_eq!(sids(&by_call), [re1.to_string()]);
    let (_, by_day) = server
        .get_json(&server.a, &filtered("DateCreated=2025-03-11"))
        .await;
    assert_eq!(sids(&by_day), [re2.to_string()]);
    let (_, before) = server
        .get_json(&server.a, &filtered("DateCreated%3C=2025-03-10"))
        .await;
    assert_eq!(sids(&before), [re1.to_string()]);
    let (_, after) = server
        .get_json(&server.a, &filtered("DateCreated%3E=2025-03-11"))
        .await;
    assert_eq!(sids(&after), [re2.to_string()]);
    let (status, _) = server
        .get_json(&server.a, &filtered("DateCreated=yesterday"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, of_call) = server
        .get_json(
            &server.a,
            &server.url(&server.a, &format!("Calls/{call2}/Recordings.json")),
        )
        .await;
    assert_eq!(sids(&of_call), [re2.to_string()]);
    let (status, scoped) = server
        .get_json(
            &server.a,
            &server.url(&server.a, &format!("Calls/{call2}/Recordings/{re2}.json")),
        )
        .await;
    assert_eq!(
        (status, scoped["sid"].as_str()),
        (StatusCode::OK, Some(re2.as_str()))
    );
    let wrong_call = server
        .get(
            &server.a,
            &server.url(&server.a, &format!("Calls/{call1}/Recordings/{re2}.json")),
        )
        .await;
    assert_eq!(wrong_call.status(), StatusCode::NOT_FOUND);
    let scoped_media = server
        .get(
            &server.a,
            &server.url(&server.a, &format!("Calls/{call2}/Recordings/{re2}.wav")),
        )
        .await;
    assert_eq!(
        scoped_media.bytes().await.unwrap().as_ref(),
        wav2.as_slice()
    );

    // Paging: one per page, following next_page_uri.
    let (_, first) = server.get_json(&server.a, &filtered("PageSize=1")).await;
    assert_eq!(sids(&first), [re2.to_string()]);
    let next = first["next_page_uri"].as_str().unwrap();
    let (_, second) = server
        .get_json(&server.a, &format!("{}{next}", server.base))
        .await;
    assert_eq!(sids(&second), [re1.to_string()]);
    assert_eq!(second["next_page_uri"], Value::Null);

    // Delete: 204, the file is gone, the recording is 404 and out of the list.
    let file = server.dir.path().join(format!("recordings/{re1}.wav"));
    assert!(file.exists());
    let url = server.url(&server.a, &format!("Recordings/{re1}.json"));
    assert_eq!(server.delete(&server.a, &url).await, StatusCode::NO_CONTENT);
    assert!(!file.exists());
    assert_eq!(
        server.get_json(&server.a, &url).await.0,
        StatusCode::NOT_FOUND
    );
    let media = server
        .get(
            &server.a,
            &server.url(&server.a, &format!("Recordings/{re1}.wav")),
        )
        .await;
    assert_eq!(media.status(), StatusCode::NOT_FOUND);
    assert_eq!(server.delete(&server.a, &url).await, StatusCode::NOT_FOUND);
    let (_, list) = server
        .get_json(&server.a, &server.url(&server.a, "Recordings.json"))
        .await;
    assert_eq!(sids(&list), [re2.to_string()]);
    let (_, soft) = server
        .get_json(&server.a, &filtered("IncludeSoftDeleted=true"))
        .await;
    assert_eq!(sids(&soft), [re2.to_string(), re1.to_string()]);
    assert_eq!(soft["recordings"][1]["status"], "deleted");
    // The deletion is an event of the call's stream.
    let history = server.log.read_stream(call1.as_str(), 1).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.event.event_type, "dialtone.call.recording.deleted");
    assert_eq!(last.event.accountsid, a.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_never_see_each_others_recordings() {
    let server = Server::start().await;
    let (call_a, re_a, _) = server.recorded_call(&server.a.sid, DAY1, 8000).await;
    let (_, re_b, _) = server.recorded_call(&server.b.sid, DAY1, 8000).await;

    let (_, list_b) = server
        .get_json(&server.b, &server.url(&server.b, "Recordings.json"))
        .await;
    assert_eq!(sids(&list_b), [re_b.to_string()]);
    // B asks for A's recording under its own account: it does not exist for B.
    for rest in [
        format!("Recordings/{re_a}.json"),
        format!("Recordings/{re_a}.wav"),
        format!("Recordings/{re_a}"),
    ] {
        let response = server.get(&server.b, &server.url(&server.b, &rest)).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{rest}");
    }
    let (_, of_call) = server
        .get_json(
            &server.b,
            &server.url(&server.b, &format!("Calls/{call_a}/Recordings.json")),
        )
        .await;
    assert!(sids(&of_call).is_empty());
    // B's credentials on A's account path: 404 as for any other account.
    let response = server
        .get(
            &server.b,
            &server.url(&server.a, &format!("Recordings/{re_a}.wav")),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        server
            .delete(
                &server.b,
                &server.url(&server.b, &format!("Recordings/{re_a}.json"))
            )
            .await,
        StatusCode::NOT_FOUND
    );
    // A's recording is untouched.
    let response = server
        .get(
            &server.a,
            &server.url(&server.a, &format!("Recordings/{re_a}.wav")),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_outside_the_data_dir_or_missing_is_not_served() {
    let server = Server::start().await;
    let a = &server.a.sid;
    // A file beside the data dir that a crafted path would reach.
    let outside: PathBuf = server
        .dir
        .path()
        .parent()
        .unwrap()
        .join(format!("secret-{a}.wav"));
    std::fs::write(&outside, b"not yours").unwrap();
    let call = CallSid::generate();
    let escaping = RecordingSid::generate();
    let missing = RecordingSid::generate();
    let absent = RecordingSid::generate();
    let completed = |sid: &RecordingSid, status: &str, path: String| -> Payload {
        RecordingCompleted {
            recording_sid: sid.clone(),
            status: status.into(),
            duration_ms: 500,
            path,
            channels: 1,
            source: "RecordVerb".into(),
            digits: None,
            error_code: (status == "absent").then_some(16101),
        }
        .into()
    };
    server
        .append(
            call.as_str(),
            a,
            vec![
                (initiated(), DAY1),
                (
                    completed(&escaping, "completed", format!("../secret-{a}.wav")),
                    DAY1,
                ),
                (
                    completed(&missing, "completed", "recordings/gone.wav".into()),
                    DAY1,
                ),
                (completed(&absent, "absent", String::new()), DAY1),
            ],
        )
        .await;
    for sid in [&escaping, &missing, &absent] {
        let response = server
            .get(
                &server.a,
                &server.url(&server.a, &format!("Recordings/{sid}.wav")),
            )
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{sid}");
    }
    let (_, json) = server
        .get_json(
            &server.a,
            &server.url(&server.a, &format!("Recordings/{absent}.json")),
        )
        .await;
    assert_eq!(
        (json["status"].as_str(), json["error_code"].as_u64()),
        (Some("absent"), Some(16101))
    );
    // Deleting the escaping recording never touches the file outside.
    assert_eq!(
        server
            .delete(
                &server.a,
                &server.url(&server.a, &format!("Recordings/{escaping}.json"))
            )
            .await,
        StatusCode::NO_CONTENT
    );
    assert!(outside.exists());
    std::fs::remove_file(&outside).unwrap();
}

/// Conferences (and their participants and recordings) through the API: Twilio's shapes,
/// filters, and one account never sees another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conferences_participants_and_their_recordings_per_account() {
    let s = Server::start().await;
    let room = ConferenceSid::generate();
    let (alice, bob) = (CallSid::generate(), CallSid::generate());
    let t0 = OffsetDateTime::now_utc();
    let at = |s: i64| t0 + time::Duration::seconds(s);
    let joined = |call: &CallSid, began: bool| -> Payload {
        ParticipantJoined {
            call_sid: call.clone(),
            muted: !began,
            start_conference_on_enter: true,
            end_conference_on_exit: false,
            conference_started: began,
            status_callback: None,
            status_callback_method: Default::default(),
            status_callback_events: Vec::new(),
        }
        .into()
    };
    s.append(
        room.as_str(),
        &s.a.sid,
        vec![
            (
                ConferenceStarted {
                    friendly_name: "standup".into(),
                    owner_node: None,
                }
                .into(),
                at(0),
            ),
            (joined(&alice, false), at(0)),
        ],
    )
    .await;
    let conference_url = s.url(&s.a, &format!("Conferences/{room}.json"));
    let (status, body) = s.get_json(&s.a, &conference_url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "init");
    assert_eq!(body["friendly_name"], "standup");
    assert!(body["reason_conference_ended"].is_null());
    s.append(room.as_str(), &s.a.sid, vec![(joined(&bob, true), at(1))])
        .await;
    let (_, body) = s.get_json(&s.a, &conference_url).await;
    assert_eq!(body["status"], "in-progress");
    let participants_url = s.url(&s.a, &format!("Conferences/{room}/Participants.json"));
    let (_, listed) = s.get_json(&s.a, &participants_url).await;
    let calls: Vec<&str> = listed["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["call_sid"].as_str().unwrap())
        .collect();
    assert_eq!(calls, [alice.as_str(), bob.as_str()]);
    let (_, muted) = s
        .get_json(&s.a, &format!("{participants_url}?Muted=true"))
        .await;
    assert_eq!(muted["participants"][0]["call_sid"], alice.as_str());
    assert_eq!(muted["participants"].as_array().unwrap().len(), 1);

    // Another account sees none of it.
    let other = s.url(&s.b, &format!("Conferences/{room}.json"));
    assert_eq!(s.get_json(&s.b, &other).await.0, StatusCode::NOT_FOUND);
    let (_, none) = s.get_json(&s.b, &s.url(&s.b, "Conferences.json")).await;
    assert_eq!(none["conferences"].as_array().unwrap().len(), 0);
    let theirs = s.url(&s.b, &format!("Conferences/{room}/Participants.json"));
    assert_eq!(s.get_json(&s.b, &theirs).await.0, StatusCode::NOT_FOUND);

    // Bob leaves, Alice ends it: completed, nobody connected.
    s.append(
        room.as_str(),
        &s.a.sid,
        vec![
            (
                ParticipantLeft {
                    call_sid: bob.clone(),
                }
                .into(),
                at(5),
            ),
            (
                ParticipantLeft {
                    call_sid: alice.clone(),
                }
                .into(),
                at(6),
            ),
            (
                ConferenceEnded {
                    reason: "last-participant-left".into(),
                    call_sid_ending_conference: Some(alice.clone()),
                }
                .into(),
                at(6),
            ),
        ],
    )
    .await;
    let (_, body) = s.get_json(&s.a, &conference_url).await;
    assert_eq!(body["status"], "completed");
    assert_eq!(body["call_sid_ending_conference"], alice.as_str());
    let (_, listed) = s.get_json(&s.a, &participants_url).await;
    assert_eq!(listed["participants"].as_array().unwrap().len(), 0);
    let bob_url = s.url(&s.a, &format!("Conferences/{room}/Participants/{bob}.json"));
    assert_eq!(s.get_json(&s.a, &bob_url).await.0, StatusCode::NOT_FOUND);
    let (_, done) = s
        .get_json(
            &s.a,
            &s.url(
                &s.a,
                "Conferences.json?Status=completed&FriendlyName=standup",
            ),
        )
        .await;
    assert_eq!(done["conferences"][0]["sid"], room.as_str());
    let bad = s.url(&s.a, "Conferences.json?Status=sleeping");
    assert_eq!(s.get_json(&s.a, &bad).await.0, StatusCode::BAD_REQUEST);

    // The room's recording belongs to the conference.
    let recording = RecordingSid::generate();
    s.append(
        room.as_str(),
        &s.a.sid,
        vec![(
            RecordingStarted::new(recording.clone(), "Conference", 1).into(),
            at(1),
        )],
    )
    .await;
    let (_, recordings) = s
        .get_json(
            &s.a,
            &s.url(&s.a, &format!("Conferences/{room}/Recordings.json")),
        )
        .await;
    assert_eq!(recordings["recordings"][0]["sid"], recording.as_str());
    assert_eq!(recordings["recordings"][0]["conference_sid"], room.as_str());
    assert!(recordings["recordings"][0]["call_sid"].is_null());
}
