//! The OpenAPI document: identical to docs/openapi.json, served at /openapi.json, a valid
//! OpenAPI 3.1 document (openapi-spec-validator), every documented operation answered by the
//! route it names, and real responses (success and error) matching the schemas it gives.
//!
//! `DIALTONE_UPDATE_OPENAPI=1 cargo test -p dialtone-api --test openapi` rewrites
//! docs/openapi.json after an API change. The Python checks need `openapi-spec-validator`
//! (`./infra/test.sh` installs it in `infra/.venv`, and points `DIALTONE_PYTHON` there).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dialtone_api::{router, ApiState};
use dialtone_events::payload::{
    CallAnswered, CallCompleted, CallInitiated, CallRinging, CallStatus, Direction,
};
use dialtone_events::sid::{AccountSid, CallSid};
use dialtone_events::sqlite::SqliteLog;
use dialtone_events::{EventLog, ExpectedVersion, NewEvent, Payload};
use dialtone_projections::*;
use dialtone_streams::{EventHub, HubConfig};
use serde_json::{json, Value};
use time::OffsetDateTime;

fn docs_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

#[test]
fn docs_openapi_json_is_the_generated_document() {
    let generated = dialtone_api::openapi_document();
    if std::env::var("DIALTONE_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(docs_path(), format!("{generated}\n")).unwrap();
    }
    let committed = std::fs::read_to_string(docs_path()).expect("docs/openapi.json");
    assert_eq!(
        committed.trim_end(),
        generated,
        "docs/openapi.json is stale: run DIALTONE_UPDATE_OPENAPI=1 cargo test -p dialtone-api --test openapi"
    );
    let doc: Value = serde_json::from_str(&generated).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
}

struct Server {
    _dir: tempfile::TempDir,
    base: String,
    log: Arc<dyn EventLog>,
    runner: ProjectionRunner,
    account: (String, String),
    client: reqwest::Client,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> =
            Arc::new(SqliteLog::open(dir.path().join("events.db"), "node-1").unwrap());
        let db = dir.path().join(READ_MODELS_FILE);
        let (accounts, numbers) = (AccountDirectory::default(), NumberDirectory::default());
        let runner = ProjectionRunner::start(
            log.clone(),
            &db,
            standard_projections(&accounts, &numbers, RateTable::default()),
            RunnerConfig::default(),
        )
        .await
        .unwrap();
        let (sid, token) = create_account(log.as_ref(), b"secret", "Docs")
            .await
            .unwrap();
        runner.catch_up(log.as_ref()).await.unwrap();
        let hub = EventHub::start(log.clone(), HubConfig::default())
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
        .with_data_dir(dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        Server {
            _dir: dir,
            base,
            log,
            runner,
            account: (sid.to_string(), token),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// A completed inbound call, as the edge would log it.
    async fn call(&self) -> CallSid {
        let account = AccountSid::parse(&self.account.0).unwrap();
        let sid = CallSid::generate();
        let t0 = OffsetDateTime::now_utc();
        let at = |ms: i64| t0 + time::Duration::milliseconds(ms);
        let ev = |p: Payload, ms: i64| NewEvent::new(account.as_str(), p).at(at(ms));
        let events = vec![
            ev(
                CallInitiated {
                    direction: Direction::Inbound,
                    from: "+14155550100".into(),
                    to: "+14155550199".into(),
                    owner_node: "node-1".into(),
                    sip_call_id: None,
                    source_addr: None,
                    phone_number_sid: None,
                    parent_call_sid: None,
                    forwarded_from: None,
                    application: Default::default(),
                }
                .into(),
                0,
            ),
            ev(CallRinging::default().into(), 50),
            ev(CallAnswered::default().into(), 1_000),
            ev(
                CallCompleted {
                    status: CallStatus::Completed,
                    duration_s: 5,
                    answered_ms: 5_000,
                    answered_at: Some(at(1_000)),
                    hangup_by: "caller".into(),
                    sip_code: None,
                }
                .into(),
                6_000,
            ),
        ];
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

    async fn send(
        &self,
        method: &str,
        path: &str,
        form: &[(&str, &str)],
        auth: bool,
    ) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "get" => self.client.get(url),
            "post" => self.client.post(url).form(form),
            "delete" => self.client.delete(url),
            other => panic!("method {other}"),
        };
        if auth {
            request = request.basic_auth(&self.account.0, Some(&self.account.1));
        }
        request.send().await.unwrap()
    }
}

fn python() -> String {
    std::env::var("DIALTONE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_every_operation_is_routed_and_responses_match_it() {
    let server = Server::start().await;
    let ac = server.account.0.clone();
    let call = server.call().await;

    // Some of everything.
    let number = server
        .send(
            "post",
            &format!("/2010-04-01/Accounts/{ac}/IncomingPhoneNumbers.json"),
            &[
                ("PhoneNumber", "+14155550123"),
                ("VoiceUrl", "https://app.example/voice"),
            ],
            true,
        )
        .await;
    assert_eq!(number.status(), 201);
    let number: Value = number.json().await.unwrap();
    let sink = server
        .send(
            "post",
            &format!("/v1/Accounts/{ac}/Sinks"),
            &[
                ("Description", "docs"),
                ("SinkType", "webhook"),
                (
                    "SinkConfiguration",
                    r#"{"destination":"https://app.example/events"}"#,
                ),
            ],
            true,
        )
        .await;
    assert_eq!(sink.status(), 201);
    let sink: Value = sink.json().await.unwrap();
    let subscription = server
        .send(
            "post",
            &format!("/v1/Accounts/{ac}/Subscriptions"),
            &[
                ("Description", "docs"),
                ("SinkSid", sink["sid"].as_str().unwrap()),
                ("Types", "dialtone.call.*"),
            ],
            true,
        )
        .await;
    assert_eq!(subscription.status(), 201);
    let subscription: Value = subscription.json().await.unwrap();
    let rates = server
        .send(
            "post",
            &format!("/v1/Accounts/{ac}/RateTables"),
            &[("Price", "calls-inbound:0.0100")],
            true,
        )
        .await;
    assert_eq!(rates.status(), 201);

    // One number in the inventory, for the search's answer.
    let inventory = dialtone_projections::inventory::parse_inventory_csv(
        "number,country,type,region,locality,voice,sms,monthly_price\n\
         +14155550177,US,local,CA,San Francisco,true,false,1.15\n",
    )
    .unwrap();
    dialtone_projections::inventory::stock_numbers(server.log.as_ref(), &inventory.rows, |_| {})
        .await
        .unwrap();
    server.runner.catch_up(server.log.as_ref()).await.unwrap();

    let doc: Value = serde_json::from_str(&dialtone_api::openapi_document()).unwrap();
    let served = server.send("get", "/openapi.json", &[], false).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.json::<Value>().await.unwrap(), doc);

    // Every documented operation is answered by the route it documents.
    let concrete = |template: &str| {
        template
            .replace("{account_sid}", &ac)
            .replace(
                "/IncomingPhoneNumbers/{sid}",
                &format!(
                    "/IncomingPhoneNumbers/{}.json",
                    number["sid"].as_str().unwrap()
                ),
            )
            .replace(
                "/Calls/{sid}/Recordings/{recording_sid}",
                &format!("/Calls/{call}/Recordings/RE00000000000000000000000000000000.json"),
            )
            .replace("/Calls/{sid}", &format!("/Calls/{call}"))
            .replace(
                "/Recordings/{sid}",
                "/Recordings/RE00000000000000000000000000000000.json",
            )
            .replace(
                "/Conferences/{sid}",
                "/Conferences/CF00000000000000000000000000000000",
            )
            .replace("{call_sid}", call.as_ref())
            .replace("{period}", "Daily.json")
            .replace("{country_code}/{number_type}", "US/Local.json")
            .replace("{file}", "RE00000000000000000000000000000000.wav")
            .replace("/console/calls/{sid}", &format!("/console/calls/{call}"))
            .replace(
                "/console/numbers/{sid}",
                "/console/numbers/PN00000000000000000000000000000000",
            )
            .replace(
                "/Sinks/{sid}",
                &format!("/Sinks/{}", sink["sid"].as_str().unwrap()),
            )
            .replace(
                "/Applications/{sid}",
                "/Applications/AP00000000000000000000000000000000.json",
            )
            .replace(
                "/Keys/{sid}",
                "/Keys/SK00000000000000000000000000000000.json",
            )
            .replace(
                "/Subscriptions/{sid}",
                &format!("/Subscriptions/{}", subscription["sid"].as_str().unwrap()),
            )
    };
    let mut operations = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if method == "delete" {
                // Checked on throwaway resources below; routing is the same as GET's path.
                continue;
            }
            let path = concrete(template);
            assert!(!path.contains('{'), "unfilled {path}");
            let response = server.send(method, &path, &[], true).await;
            let route = response
                .headers()
                .get("x-dialtone-route")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(
                route.as_deref(),
                Some(template.as_str()),
                "{} {path} answered {} by {route:?}",
                method.to_uppercase(),
                response.status()
            );
            operations += 1;
        }
    }
    assert!(operations >= 35, "{operations}");

    // Real responses, validated against the document.
    let mut cases = Vec::new();
    let mut case = |method: &str, template: &str, status: u16, body: Value| {
        cases.push(json!({"method": method, "path": template, "status": status, "body": body}));
    };
    let account_path = "/2010-04-01/Accounts/{account_sid}";
    let v1 = "/v1/Accounts/{account_sid}";
    // (method, template, path, form, authenticated)
    type Request<'a> = (&'a str, String, String, Vec<(&'a str, &'a str)>, bool);
    let requests: Vec<Request> = vec![
        (
            "get",
            format!("{account_path}/AvailablePhoneNumbers/{{country_code}}/{{number_type}}"),
            format!("/2010-04-01/Accounts/{ac}/AvailablePhoneNumbers/US/Local.json?AreaCode=415"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{account_path}/AvailablePhoneNumbers/{{country_code}}/{{number_type}}"),
            format!("/2010-04-01/Accounts/{ac}/AvailablePhoneNumbers/ZZ/Local.json"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{account_path}/Calls.json"),
            format!("/2010-04-01/Accounts/{ac}/Calls.json"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{account_path}/Calls/{{sid}}"),
            format!("/2010-04-01/Accounts/{ac}/Calls/{call}.json"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{account_path}/Calls/{{sid}}"),
            format!("/2010-04-01/Accounts/{ac}/Calls/CA00000000000000000000000000000000.json"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{account_path}/Calls.json"),
            format!("/2010-04-01/Accounts/{ac}/Calls.json?Status=sideways"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{account_path}/Calls.json"),
            format!("/2010-04-01/Accounts/{ac}/Calls.json"),
            vec![],
            false,
        ),
        (
            "get",
            format!("{account_path}/IncomingPhoneNumbers.json"),
            format!("/2010-04-01/Accounts/{ac}/IncomingPhoneNumbers.json"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{account_path}/IncomingPhoneNumbers/{{sid}}"),
            format!(
                "/2010-04-01/Accounts/{ac}/IncomingPhoneNumbers/{}.json",
                number["sid"].as_str().unwrap()
            ),
            vec![],
            true,
        ),
        (
            "post",
            format!("{account_path}/IncomingPhoneNumbers.json"),
            format!("/2010-04-01/Accounts/{ac}/IncomingPhoneNumbers.json"),
            vec![("PhoneNumber", "+14155550124")],
            true,
        ),
        (
            "post",
            format!("{account_path}/IncomingPhoneNumbers.json"),
            format!("/2010-04-01/Accounts/{ac}/IncomingPhoneNumbers.json"),
            vec![("PhoneNumber", "+14155550123")],
            true,
        ),
        (
            "get",
            format!("{account_path}/Recordings.json"),
            format!("/2010-04-01/Accounts/{ac}/Recordings.json"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{account_path}/Calls/{{sid}}/Recordings.json"),
            format!("/2010-04-01/Accounts/{ac}/Calls/{call}/Recordings.json"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{account_path}/Conferences.json"),
            format!("/2010-04-01/Accounts/{ac}/Conferences.json"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{account_path}/Conferences/{{sid}}"),
            format!(
                "/2010-04-01/Accounts/{ac}/Conferences/CF00000000000000000000000000000000.json"
            ),
            vec![],
            true,
        ),
        (
            "get",
            format!("{account_path}/Usage/Records.json"),
            format!("/2010-04-01/Accounts/{ac}/Usage/Records.json"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{account_path}/Usage/Records/{{period}}"),
            format!("/2010-04-01/Accounts/{ac}/Usage/Records/Daily.json?StartDate=-2days"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{v1}/Calls/{{sid}}/Events"),
            format!("/v1/Accounts/{ac}/Calls/{call}/Events"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{v1}/Events"),
            format!("/v1/Accounts/{ac}/Events?Types=nope"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{v1}/RateTables"),
            format!("/v1/Accounts/{ac}/RateTables"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{v1}/Sinks"),
            format!("/v1/Accounts/{ac}/Sinks"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{v1}/Sinks/{{sid}}"),
            format!("/v1/Accounts/{ac}/Sinks/{}", sink["sid"].as_str().unwrap()),
            vec![],
            true,
        ),
        (
            "get",
            format!("{v1}/Subscriptions"),
            format!("/v1/Accounts/{ac}/Subscriptions"),
            vec![],
            true,
        ),
        (
            "get",
            format!("{v1}/Subscriptions/{{sid}}"),
            format!(
                "/v1/Accounts/{ac}/Subscriptions/{}",
                subscription["sid"].as_str().unwrap()
            ),
            vec![],
            true,
        ),
        (
            "get",
            format!("{v1}/Subscriptions/{{sid}}/SubscribedEvents"),
            format!(
                "/v1/Accounts/{ac}/Subscriptions/{}/SubscribedEvents",
                subscription["sid"].as_str().unwrap()
            ),
            vec![],
            true,
        ),
        (
            "post",
            format!("{v1}/Sinks"),
            format!("/v1/Accounts/{ac}/Sinks"),
            vec![("Description", "x")],
            true,
        ),
    ];
    for (method, template, path, form, auth) in &requests {
        let response = server.send(method, path, form, *auth).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        case(method, template, status, body);
    }
    case("post", &format!("{v1}/Sinks"), 201, sink.clone());
    case(
        "post",
        &format!("{v1}/Subscriptions"),
        201,
        subscription.clone(),
    );
    case(
        "post",
        &format!("{account_path}/IncomingPhoneNumbers.json"),
        201,
        number.clone(),
    );
    let statuses: Vec<u64> = cases
        .iter()
        .map(|c| c["status"].as_u64().unwrap())
        .collect();
    for expected in [200, 201, 400, 401, 404] {
        assert!(
            statuses.contains(&expected),
            "no {expected} among {statuses:?}"
        );
    }

    // Deletes, on throwaway resources: routed, 204.
    for (template, path) in [
        (
            format!("{v1}/Subscriptions/{{sid}}"),
            format!(
                "/v1/Accounts/{ac}/Subscriptions/{}",
                subscription["sid"].as_str().unwrap()
            ),
        ),
        (
            format!("{v1}/Sinks/{{sid}}"),
            format!("/v1/Accounts/{ac}/Sinks/{}", sink["sid"].as_str().unwrap()),
        ),
        (
            format!("{account_path}/IncomingPhoneNumbers/{{sid}}"),
            format!(
                "/2010-04-01/Accounts/{ac}/IncomingPhoneNumbers/{}.json",
                number["sid"].as_str().unwrap()
            ),
        ),
    ] {
        let response = server.send("delete", &path, &[], true).await;
        assert_eq!(response.status(), 204, "{path}");
        assert_eq!(response.headers()["x-dialtone-route"], template.as_str());
        assert!(
            doc["paths"][&template]["delete"]["responses"]["204"].is_object(),
            "{template}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let doc_file = dir.path().join("openapi.json");
    std::fs::write(&doc_file, doc.to_string()).unwrap();
    let cases_file = dir.path().join("cases.jsonl");
    std::fs::write(
        &cases_file,
        cases
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openapi_check.py");
    let output = std::process::Command::new(python())
        .arg(&script)
        .arg(&doc_file)
        .arg(&cases_file)
        .output()
        .expect("python (DIALTONE_PYTHON)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}\n(the checks need openapi-spec-validator: ./infra/test.sh installs it in infra/.venv)",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("{} responses match it", cases.len())),
        "{stdout}"
    );
}
