//! Outbound calls and live call control over HTTP: the real router on an ephemeral port, a
//! temp-dir SQLite log, a running projection runner, and a call controller that writes the
//! call's events to the log the way the `dialtone` binary does (without placing real calls).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dialtone_api::{
    router, ApiState, CallAction, CallController, ControlError, CreateCall, UpdateCall,
};
use dialtone_events::payload::{
    CallAnswered, CallCompleted, CallInitiated, CallRedirected, CallRinging, CallStatus, Direction,
    HttpMethod,
};
use dialtone_events::sid::{AccountSid, CallSid};
use dialtone_events::{EventLog, ExpectedVersion, NewEvent, Payload};
use dialtone_projections::*;
use reqwest::StatusCode;
use serde_json::Value;

/// A `To` for which the controller refuses with a parameter error (like a geo permission).
const FORBIDDEN_TO: &str = "+15005550009";
/// A `To` for which the controller is unavailable (like no trunk reachable).
const UNREACHABLE_TO: &str = "+15005550008";

#[derive(Debug, Clone, PartialEq)]
enum Command {
    Create(AccountSid, Box<CreateCall>),
    Update(AccountSid, CallSid, UpdateCall),
}

/// Writes call events as the binary does: `call.initiated` (outbound-api, with the
/// application) on create; `call.redirected` for a redirect; `call.completed` for hangup and
/// cancel. Knows the calls from the log, so it answers `NotFound`/`InvalidState` itself.
struct LogController {
    log: Arc<dyn EventLog>,
    commands: Mutex<Vec<Command>>,
    /// Calls the controller treats as already ended, whatever the read model says (a
    /// read model that lags behind the owner node).
    ended_elsewhere: Mutex<HashSet<CallSid>>,
}

impl LogController {
    fn commands(&self) -> Vec<Command> {
        self.commands.lock().unwrap().clone()
    }

    fn record(&self, command: Command) {
        self.commands.lock().unwrap().push(command);
    }
}

fn unavailable(error: impl std::fmt::Display) -> ControlError {
    ControlError::Unavailable(error.to_string())
}

#[async_trait]
impl CallController for LogController {
    async fn create_call(
        &self,
        account: &AccountSid,
        request: CreateCall,
    ) -> Result<CallSid, ControlError> {
        self.record(Command::Create(account.clone(), Box::new(request.clone())));
        if request.to == FORBIDDEN_TO {
            return Err(ControlError::InvalidParameter {
                code: 21215,
                message: format!("Account not authorized to call {}", request.to),
            });
        }
        if request.to == UNREACHABLE_TO {
            return Err(ControlError::Unavailable(
                "no SIP trunk is configured".into(),
            ));
        }
        let sid = CallSid::generate();
        let initiated = CallInitiated {
            direction: Direction::OutboundApi,
            from: request.from.clone(),
            to: request.to.clone(),
            owner_node: "node-1".into(),
            sip_call_id: None,
            source_addr: None,
            phone_number_sid: None,
            parent_call_sid: None,
            forwarded_from: None,
            application: request.application(),
        };
        self.log
            .append(
                sid.as_str(),
                ExpectedVersion::NoStream,
                vec![NewEvent::new(account.as_str(), initiated)],
            )
            .await
            .map_err(unavailable)?;
        Ok(sid)
    }

    async fn update_call(
        &self,
        account: &AccountSid,
        call: &CallSid,
        update: UpdateCall,
    ) -> Result<(), ControlError> {
        self.record(Command::Update(
            account.clone(),
            call.clone(),
            update.clone(),
        ));
        let events = self
            .log
            .read_stream(call.as_str(), 1)
            .await
            .map_err(unavailable)?;
        match events.first() {
            Some(first) if first.event.accountsid == account.as_str() => {}
            _ => return Err(ControlError::NotFound),
        }
        let payloads: Vec<Payload> = events
            .iter()
            .filter_map(|e| e.event.payload().ok())
            .collect();
        let ended = payloads
            .iter()
            .any(|p| matches!(p, Payload::CallCompleted(_)))
            || self.ended_elsewhere.lock().unwrap().contains(call);
        let answered = payloads
            .iter()
            .any(|p| matches!(p, Payload::CallAnswered(_)));
        if ended || (update.action == Some(CallAction::Cancel) && answered) {
            return Err(ControlError::InvalidState);
        }
        let event = match update.action {
            Some(CallAction::Redirect { url, method, .. }) => Some(
                CallRedirected {
                    url,
                    method,
                    by: "api".into(),
                }
                .into(),
            ),
            Some(CallAction::Hangup) | Some(CallAction::Cancel) => Some(
                CallCompleted {
                    status: if answered {
                        CallStatus::Completed
                    } else {
                        CallStatus::Canceled
                    },
                    duration_s: 0,
                    answered_ms: 0,
                    answered_at: None,
                    hangup_by: "api".into(),
                    sip_code: None,
                }
                .into(),
            ),
            Some(CallAction::Twiml(_)) | None => None,
        };
        if let Some(payload) = event {
            let payload: Payload = payload;
            self.log
                .append(
                    call.as_str(),
                    ExpectedVersion::Any,
                    vec![NewEvent::new(account.as_str(), payload)],
                )
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

struct Account {
    sid: AccountSid,
    token: String,
}

struct Server {
    _dir: tempfile::TempDir,
    base: String,
    log: Arc<dyn EventLog>,
    runner: ProjectionRunner,
    controller: Arc<LogController>,
    client: reqwest::Client,
    a: Account,
    b: Account,
}

impl Server {
    async fn start(with_controller: bool) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(
            dialtone_events::sqlite::SqliteLog::open(dir.path().join("events.db"), "node-1")
                .unwrap(),
        );
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
        let controller = Arc::new(LogController {
            log: log.clone(),
            commands: Mutex::new(Vec::new()),
            ended_elsewhere: Mutex::new(HashSet::new()),
        });
        let mut state = ApiState::new(
            log.clone(),
            ReadModels::new(&db),
            accounts,
            numbers,
            runner.handle(),
            "node-1",
        );
        if with_controller {
            state = state.with_call_controller(controller.clone());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        Server {
            _dir: dir,
            base,
            log,
            runner,
            controller,
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

    async fn get(&self, who: &Account, url: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(url)
            .basic_auth(who.sid.as_str(), Some(&who.token))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, who: &Account, url: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .client
            .post(url)
            .basic_auth(who.sid.as_str(), Some(&who.token))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates a call for `who` through the API and returns its SID.
    async fn create(&self, who: &Account) -> CallSid {
        let (status, body) = self
            .post(
                who,
                &self.url(who, "Calls.json"),
                &[
                    ("To", "+14155550123"),
                    ("From", "+14155550100"),
                    ("Url", "https://app.example/answer"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        CallSid::parse(body["sid"].as_str().unwrap()).unwrap()
    }

    /// Appends call-progress events as the SIP edge would, and waits for the projections.
    async fn progress(&self, who: &Account, call: &CallSid, payloads: Vec<Payload>) {
        let events = payloads
            .into_iter()
            .map(|p| NewEvent::new(who.sid.as_str(), p))
            .collect();
        let appended = self
            .log
            .append(call.as_str(), ExpectedVersion::Any, events)
            .await
            .unwrap();
        self.runner
            .handle()
            .wait_for(&appended.positions)
            .await
            .unwrap();
    }

    fn updates(&self) -> Vec<UpdateCall> {
        self.controller
            .commands()
            .into_iter()
            .filter_map(|c| match c {
                Command::Update(_, _, update) => Some(update),
                Command::Create(..) => None,
            })
            .collect()
    }
}

fn assert_twilio_error(body: &Value, code: u64, status: u64) {
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(
        body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}")
    );
}

#[tokio::test]
async fn create_answers_201_queued_and_the_call_is_listed_at_once() {
    let s = Server::start(true).await;
    let (status, call) = s
        .post(
            &s.a,
            &s.url(&s.a, "Calls.json"),
            &[
                ("To", "(415) 555-0123"),
                ("From", "+1 415 555 0100"),
                ("Url", "https://app.example/answer"),
                ("Method", "GET"),
                ("FallbackUrl", "https://app.example/fallback"),
                ("StatusCallback", "https://app.example/status"),
                ("StatusCallbackMethod", "GET"),
                ("StatusCallbackEvent", "initiated"),
                ("StatusCallbackEvent", "ringing answered"),
                ("StatusCallbackEvent", "completed"),
                ("Timeout", "30"),
                ("Record", "true"),
                ("SendDigits", "1234w#"),
                ("TimeLimit", "600"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    let sid = call["sid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("CA") && sid.len() == 34, "{sid}");
    assert_eq!(call["status"], "queued");
    assert_eq!(call["direction"], "outbound-api");
    assert_eq!(call["to"], "+14155550123");
    assert_eq!(call["to_formatted"], "(415) 555-0123");
    assert_eq!(call["from"], "+14155550100");
    assert_eq!(call["account_sid"], s.a.sid.as_str());
    assert_eq!(call["api_version"], "2010-04-01");
    assert_eq!(call["start_time"], Value::Null);
    assert_eq!(call["end_time"], Value::Null);
    assert_eq!(call["duration"], Value::Null);
    assert_eq!(call["price"], Value::Null);
    assert_eq!(call["queue_time"], "0");
    assert_eq!(call["parent_call_sid"], Value::Null);
    assert!(call["date_created"].as_str().unwrap().ends_with("+0000"));
    assert_eq!(
        call["uri"],
        format!("/2010-04-01/Accounts/{}/Calls/{sid}.json", s.a.sid)
    );

    // The controller got the validated, normalised request for the right account.
    let commands = s.controller.commands();
    let [Command::Create(account, request)] = commands.as_slice() else {
        panic!("{commands:?}");
    };
    assert_eq!(account, &s.a.sid);
    assert_eq!(
        **request,
        CreateCall {
            to: "+14155550123".into(),
            from: "+14155550100".into(),
            url: Some("https://app.example/answer".into()),
            method: HttpMethod::Get,
            twiml: None,
            fallback_url: Some("https://app.example/fallback".into()),
            fallback_method: HttpMethod::Post,
            status_callback: Some("https://app.example/status".into()),
            status_callback_method: HttpMethod::Get,
            status_callback_events: vec![
                "initiated".into(),
                "ringing".into(),
                "answered".into(),
                "completed".into()
            ],
            timeout_s: 30,
            record: true,
            recording_channels: 1,
            recording_trim_silence: true,
            recording_status_callback: None,
            recording_status_callback_method: HttpMethod::Post,
            recording_status_callback_events: vec![],
            send_digits: Some("1234w#".into()),
            time_limit_s: Some(600),
            sip_auth_username: None,
            sip_auth_password: None,
            caller_id: None,
        }
    );

    // Read-your-writes: no waiting between the create and the reads.
    let (status, page) = s.get(&s.a, &s.url(&s.a, "Calls.json")).await;
    assert_eq!(status, StatusCode::OK);
    let listed = page["calls"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{page}");
    assert_eq!(listed[0], call);
    let (status, fetched) = s
        .get(&s.a, &s.url(&s.a, &format!("Calls/{sid}.json")))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, call);
    // Another account does not see it.
    let (_, page) = s.get(&s.b, &s.url(&s.b, "Calls.json")).await;
    assert_eq!(page["calls"].as_array().unwrap().len(), 0);

    // Inline TwiML; a SIP target with a non-number caller identity.
    let twiml = "<Response><Say>Hello</Say></Response>";
    let (status, call) = s
        .post(
            &s.a,
            &s.url(&s.a, "Calls.json"),
            &[
                ("To", "sip:alice@pbx.example.com;transport=tcp"),
                ("From", "support-bot"),
                ("Twiml", twiml),
                ("SipAuthUsername", "dialtone"),
                ("SipAuthPassword", "secret"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    assert_eq!(call["to"], "sip:alice@pbx.example.com;transport=tcp");
    assert_eq!(call["from"], "support-bot");
    let commands = s.controller.commands();
    let Some(Command::Create(_, request)) = commands.last() else {
        panic!("{commands:?}");
    };
    assert_eq!(request.twiml.as_deref(), Some(twiml));
    assert_eq!(request.url, None);
    assert_eq!(request.sip_auth_username.as_deref(), Some("dialtone"));
    assert_eq!(request.timeout_s, 60);
    assert!(request.status_callback_events.is_empty());
    let (_, page) = s.get(&s.a, &s.url(&s.a, "Calls.json")).await;
    assert_eq!(page["calls"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn create_validation_errors_use_twilio_codes() {
    let s = Server::start(true).await;
    let url = s.url(&s.a, "Calls.json");
    let to = ("To", "+14155550123");
    let from = ("From", "+14155550100");
    let answer = ("Url", "https://app.example/answer");
    let long_twiml = format!("<Response><Say>{}</Say></Response>", "a".repeat(4000));
    let cases: Vec<(Vec<(&str, &str)>, u64)> = vec![
        (vec![from, answer], 21201),
        (vec![("To", ""), from, answer], 21201),
        (vec![to, answer], 21213),
        (vec![to, ("From", "not a number"), answer], 21212),
        (vec![("To", "hello"), from, answer], 21211),
        (vec![("To", "client:alice"), from, answer], 21211),
        (vec![("To", "sip:alice@bad host"), from, answer], 21211),
        (vec![to, from, ("Url", "not a url")], 21205),
        (vec![to, from], 21205),
        (vec![to, from, ("Twiml", &long_twiml)], 20001),
        (vec![to, from, answer, ("Method", "PUT")], 20001),
        (vec![to, from, answer, ("StatusCallback", "nope")], 21205),
        (
            vec![to, from, answer, ("StatusCallbackEvent", "bogus")],
            20001,
        ),
        (vec![to, from, answer, ("Timeout", "0")], 20001),
        (vec![to, from, answer, ("Timeout", "soon")], 20001),
        (vec![to, from, answer, ("SendDigits", "12x")], 20001),
        (
            vec![
                to,
                from,
                answer,
                ("SendDigits", "123456789012345678901234567890123"),
            ],
            20001,
        ),
        (vec![to, from, answer, ("Record", "maybe")], 20001),
        (vec![to, from, answer, ("TimeLimit", "0")], 20001),
        (
            vec![
                to,
                from,
                ("ApplicationSid", "AP0123456789abcdef0123456789abcdef"),
            ],
            21218,
        ),
        (
            vec![to, from, answer, ("MachineDetection", "Enable")],
            20001,
        ),
    ];
    for (form, code) in &cases {
        let (status, body) = s.post(&s.a, &url, form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form:?}: {body}");
        assert_twilio_error(&body, *code, 400);
    }
    assert!(
        s.controller.commands().is_empty(),
        "invalid requests never reach the controller"
    );
    let (_, page) = s.get(&s.a, &url).await;
    assert_eq!(page["calls"].as_array().unwrap().len(), 0);

    // Errors the controller reports.
    let (status, body) = s
        .post(&s.a, &url, &[("To", FORBIDDEN_TO), from, answer])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21215, 400);
    assert!(body["message"].as_str().unwrap().contains(FORBIDDEN_TO));
    let (status, body) = s
        .post(&s.a, &url, &[("To", UNREACHABLE_TO), from, answer])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_twilio_error(&body, 20503, 503);
    assert!(body["message"].as_str().unwrap().contains("no SIP trunk"));
    let (_, page) = s.get(&s.a, &url).await;
    assert_eq!(page["calls"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn updates_map_to_call_actions() {
    let s = Server::start(true).await;
    let call = s.create(&s.a).await;
    s.progress(
        &s.a,
        &call,
        vec![
            CallRinging::default().into(),
            CallAnswered::default().into(),
        ],
    )
    .await;
    let one = s.url(&s.a, &format!("Calls/{call}.json"));

    let (status, body) = s
        .post(
            &s.a,
            &one,
            &[
                ("Url", "https://app.example/hold"),
                ("Method", "GET"),
                ("FallbackUrl", "https://app.example/fallback"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sid"], call.as_str());
    assert_eq!(body["status"], "in-progress");
    assert!(body["start_time"].is_string());

    let twiml = "<Response><Say>Please hold</Say></Response>";
    let (status, _) = s.post(&s.a, &one, &[("Twiml", twiml)]).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = s
        .post(
            &s.a,
            &one,
            &[
                ("StatusCallback", "https://app.example/status2"),
                ("StatusCallbackMethod", "GET"),
                ("TimeLimit", "120"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // An update that asks for nothing answers the call without bothering the controller.
    let (status, body) = s.post(&s.a, &one, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "in-progress");

    let (status, body) = s.post(&s.a, &one, &[("Status", "completed")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The hang-up's call.completed was durable when the controller returned: it shows.
    assert_eq!(body["status"], "completed");
    assert!(body["end_time"].is_string());
    let (_, fetched) = s.get(&s.a, &one).await;
    assert_eq!(fetched["status"], "completed");

    assert_eq!(
        s.updates(),
        vec![
            UpdateCall {
                action: Some(CallAction::Redirect {
                    url: "https://app.example/hold".into(),
                    method: HttpMethod::Get,
                    fallback_url: Some("https://app.example/fallback".into()),
                    fallback_method: HttpMethod::Post,
                }),
                ..UpdateCall::default()
            },
            UpdateCall {
                action: Some(CallAction::Twiml(twiml.into())),
                ..UpdateCall::default()
            },
            UpdateCall {
                action: None,
                status_callback: Some("https://app.example/status2".into()),
                status_callback_method: Some(HttpMethod::Get),
                time_limit_s: Some(120),
            },
            UpdateCall {
                action: Some(CallAction::Hangup),
                ..UpdateCall::default()
            },
        ]
    );
    let redirected = s
        .log
        .read_stream(call.as_str(), 1)
        .await
        .unwrap()
        .iter()
        .any(|e| e.event.event_type == "dialtone.call.redirected");
    assert!(redirected);

    // The call has ended: every further update is 21220, and never reaches the controller.
    let before = s.updates().len();
    for form in [
        vec![("Url", "https://app.example/again")],
        vec![("Twiml", "<Response/>")],
        vec![("Status", "completed")],
        vec![("Status", "canceled")],
        vec![("StatusCallback", "https://app.example/s")],
    ] {
        let (status, body) = s.post(&s.a, &one, &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form:?}");
        assert_twilio_error(&body, 21220, 400);
    }
    assert_eq!(s.updates().len(), before);

    // Bad parameters are 400s of their own.
    let other = s.create(&s.a).await;
    let other_url = s.url(&s.a, &format!("Calls/{other}.json"));
    let (status, body) = s.post(&s.a, &other_url, &[("Status", "busy")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 20001, 400);
    let (status, body) = s.post(&s.a, &other_url, &[("Url", "ftp://x")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21205, 400);
}

#[tokio::test]
async fn cancel_applies_only_to_queued_or_ringing_calls() {
    let s = Server::start(true).await;

    // Queued: canceled.
    let queued = s.create(&s.a).await;
    let (status, body) = s
        .post(
            &s.a,
            &s.url(&s.a, &format!("Calls/{queued}.json")),
            &[("Status", "canceled")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "canceled");
    assert_eq!(body["duration"], Value::Null);

    // Ringing: canceled.
    let ringing = s.create(&s.a).await;
    s.progress(&s.a, &ringing, vec![CallRinging::default().into()])
        .await;
    let (status, body) = s
        .post(
            &s.a,
            &s.url(&s.a, &format!("Calls/{ringing}.json")),
            &[("Status", "canceled")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "canceled");

    // In progress: 21220, the call goes on; Status=completed hangs it up.
    let answered = s.create(&s.a).await;
    s.progress(
        &s.a,
        &answered,
        vec![
            CallRinging::default().into(),
            CallAnswered::default().into(),
        ],
    )
    .await;
    let url = s.url(&s.a, &format!("Calls/{answered}.json"));
    let updates_before = s.updates().len();
    let (status, body) = s.post(&s.a, &url, &[("Status", "canceled")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21220, 400);
    assert_eq!(s.updates().len(), updates_before);
    let (_, fetched) = s.get(&s.a, &url).await;
    assert_eq!(fetched["status"], "in-progress");
    let (status, body) = s.post(&s.a, &url, &[("Status", "completed")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "completed");
}

#[tokio::test]
async fn the_controller_has_the_last_word_on_state() {
    let s = Server::start(true).await;
    let call = s.create(&s.a).await;
    s.progress(&s.a, &call, vec![CallAnswered::default().into()])
        .await;
    // The owner node knows the call ended; the read model has not heard yet.
    s.controller
        .ended_elsewhere
        .lock()
        .unwrap()
        .insert(call.clone());
    let (status, body) = s
        .post(
            &s.a,
            &s.url(&s.a, &format!("Calls/{call}.json")),
            &[("Url", "https://app.example/next")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21220, 400);
    assert_eq!(s.updates().len(), 1, "the controller was asked");
}

#[tokio::test]
async fn unknown_and_foreign_calls_are_404() {
    let s = Server::start(true).await;
    let call = s.create(&s.a).await;
    let hangup = [("Status", "completed")];

    let missing = CallSid::generate();
    let (status, body) = s
        .post(
            &s.a,
            &s.url(&s.a, &format!("Calls/{missing}.json")),
            &hangup,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_twilio_error(&body, 20404, 404);
    let (status, _) = s
        .post(&s.a, &s.url(&s.a, "Calls/not-a-call.json"), &hangup)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // B on its own path: A's call does not exist. B on A's path: neither does A's account.
    let (status, body) = s
        .post(&s.b, &s.url(&s.b, &format!("Calls/{call}.json")), &hangup)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_twilio_error(&body, 20404, 404);
    let (status, _) = s
        .post(&s.b, &s.url(&s.a, &format!("Calls/{call}.json")), &hangup)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .post(
            &s.b,
            &s.url(&s.a, "Calls.json"),
            &[
                ("To", "+14155550123"),
                ("From", "+14155550100"),
                ("Url", "https://evil.example/"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(s.updates().is_empty(), "no update reached the controller");
    assert_eq!(s.controller.commands().len(), 1, "only A's create");

    // A's call is untouched.
    let (_, fetched) = s
        .get(&s.a, &s.url(&s.a, &format!("Calls/{call}.json")))
        .await;
    assert_eq!(fetched["status"], "queued");
}

#[tokio::test]
async fn without_a_controller_create_and_update_answer_501() {
    let s = Server::start(false).await;
    let (status, body) = s
        .post(
            &s.a,
            &s.url(&s.a, "Calls.json"),
            &[
                ("To", "+14155550123"),
                ("From", "+14155550100"),
                ("Url", "https://app.example/answer"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_twilio_error(&body, 20501, 501);
    let (status, body) = s
        .post(
            &s.a,
            &s.url(&s.a, &format!("Calls/{}.json", CallSid::generate())),
            &[("Status", "completed")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_twilio_error(&body, 20501, 501);
    assert!(s.controller.commands().is_empty());
}
