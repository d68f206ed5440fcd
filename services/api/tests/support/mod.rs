//! The API tests' harness: the real router on an ephemeral port, a temp-dir SQLite log, a
//! running projection runner, two accounts, and reqwest as the client.
#![allow(dead_code)]
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dialtone_api::{router, ApiState};
use dialtone_events::payload::{
    CallAnswered, CallCompleted, CallInitiated, CallRejected, CallRinging, CallStatus, Direction,
};
use dialtone_events::sid::{AccountSid, CallSid, PhoneNumberSid};
use dialtone_events::sqlite::SqliteLog;
use dialtone_events::{EventLog, ExpectedVersion, NewEvent, Payload};
use dialtone_projections::*;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use reqwest::StatusCode;
use serde_json::Value;
use time::OffsetDateTime;

pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
        .clone()
}

pub struct Account {
    pub sid: AccountSid,
    pub token: String,
}

pub struct Server {
    _dir: tempfile::TempDir,
    pub base: String,
    pub log: Arc<dyn EventLog>,
    pub runner: ProjectionRunner,
    pub numbers: NumberDirectory,
    pub client: reqwest::Client,
    pub a: Account,
    pub b: Account,
}

impl Server {
    pub async fn start() -> Server {
        // Install the recorder before anything records, so every counter is captured.
        let metrics = prometheus();
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
            numbers.clone(),
            runner.handle(),
            "node-1",
        )
        .with_metrics(metrics);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        Server {
            _dir: dir,
            base,
            log,
            runner,
            numbers,
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

    pub fn url(&self, account: &Account, rest: &str) -> String {
        format!("{}/2010-04-01/Accounts/{}/{rest}", self.base, account.sid)
    }

    pub async fn get(&self, who: &Account, url: &str) -> (StatusCode, Value) {
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

    pub async fn post(
        &self,
        who: &Account,
        url: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value) {
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

    pub async fn delete(&self, who: &Account, url: &str) -> StatusCode {
        self.client
            .delete(url)
            .basic_auth(who.sid.as_str(), Some(&who.token))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Appends a whole call to the log, as the SIP edge would, and waits for projections.
    pub async fn call(
        &self,
        account: &AccountSid,
        t0: OffsetDateTime,
        outcome: Option<u64>,
    ) -> CallSid {
        let sid = CallSid::generate();
        let at = |ms: i64| t0 + time::Duration::milliseconds(ms);
        let ev = |p: Payload, ms: i64| NewEvent::new(account.as_str(), p).at(at(ms));
        let mut events = vec![
            ev(
                CallInitiated {
                    direction: Direction::Inbound,
                    from: "+14155550100".into(),
                    to: "+14155550199".into(),
                    owner_node: "node-1".into(),
                    sip_call_id: None,
                    source_addr: None,
                    phone_number_sid: Some(PhoneNumberSid::generate()),
                    parent_call_sid: None,
                    forwarded_from: None,
                    application: Default::default(),
                }
                .into(),
                0,
            ),
            ev(CallRinging::default().into(), 50),
        ];
        match outcome {
            Some(talk_ms) => {
                events.push(ev(CallAnswered::default().into(), 1_000));
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
            None => {
                events.push(ev(
                    CallRejected {
                        reason: "busy".into(),
                        sip_code: 486,
                    }
                    .into(),
                    100,
                ));
                events.push(ev(
                    CallCompleted {
                        status: CallStatus::Busy,
                        duration_s: 0,
                        answered_ms: 0,
                        answered_at: None,
                        hangup_by: "dialtone".into(),
                        sip_code: Some(486),
                    }
                    .into(),
                    110,
                ));
            }
        }
        let appended = self
            .log
            .append(sid.as_str(), ExpectedVersion::NoStream, events)
            .await
            .unwrap();
        self.runner
            .handle()
            .wait_for(&appended.positions)
            .await
            .unwrap();
        sid
    }
}

pub fn assert_twilio_error(body: &Value, code: u64, status: u64) {
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(
        body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}")
    );
}
