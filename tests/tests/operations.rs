//! Operating `dialtone serve`: accounts from the CLI, a clean drain on SIGTERM, rebuilding the
//! read models.

use std::process::Command;

use dialtone_events::sqlite::SqliteLog;
use dialtone_events::EventLog;
use dialtone_tests::dialtone::binary;
use dialtone_tests::{eventually, Backend, Dialtone, RtpSink, Sipp, TwimlApp};
use serde_json::Value;

/// `dialtone accounts create` beside a running server: the new account can use the API at
/// once (the server picks up appends made by another process), and it sees none of the
/// first account's numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_created_by_the_cli_can_use_the_api() {
    let dialtone = Dialtone::start(Backend::Sqlite).await;
    dialtone
        .provision("+14155550123", "http://127.0.0.1:9/voice", None)
        .await;
    let output = Command::new(binary())
        .args([
            "accounts",
            "create",
            "--friendly-name",
            "Second",
            "--data-dir",
        ])
        .arg(dialtone.data_dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let created: Value = serde_json::from_slice(&output.stdout).unwrap();
    let sid = created["account_sid"].as_str().unwrap().to_owned();
    let token = created["auth_token"].as_str().unwrap().to_owned();
    assert!(
        sid.starts_with("AC") && sid.len() == 34 && token.len() == 32,
        "{created}"
    );

    let url = format!(
        "{}/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json",
        dialtone.http_url
    );
    let client = reqwest::Client::new();
    let numbers = eventually(10, "the new account to authenticate", || {
        let (client, url, sid, token) = (client.clone(), url.clone(), sid.clone(), token.clone());
        async move {
            let response = client
                .get(&url)
                .basic_auth(&sid, Some(&token))
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(response.json::<Value>().await.ok()?)
        }
    })
    .await;
    assert_eq!(
        numbers["incoming_phone_numbers"].as_array().unwrap().len(),
        0,
        "isolation: {numbers}"
    );
    let wrong = client
        .get(&url)
        .basic_auth(&sid, Some("0".repeat(32)))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

/// SIGTERM drains: the live call gets a BYE, `call.completed` is in the log, the process
/// exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hangs_up_live_calls_and_flushes_the_log() {
    let app = TwimlApp::start().await;
    let mut dialtone = Dialtone::start(Backend::Sqlite).await;
    app.set_auth_token(&dialtone.auth_token);
    app.twiml(
        "/voice",
        r#"<Response><Say>Please hold.</Say><Pause length="60"/></Response>"#,
    );
    dialtone
        .provision("+14155550100", &app.url("/voice"), None)
        .await;
    let rtp = RtpSink::start();
    let sipp = Sipp::scenario("inbound_dialtone_hangs_up.xml")
        .key("dialed", "+14155550100")
        .key("rtp_port", rtp.port)
        .run(dialtone.sip_addr());
    let sipp = tokio::spawn(sipp);
    eventually(30, "the call to be answered", || async {
        dialtone
            .calls()
            .await
            .into_iter()
            .find(|c| c["status"] == "in-progress")
            .map(|_| ())
    })
    .await;
    let status = tokio::task::block_in_place(|| dialtone.stop());
    assert!(
        status.success(),
        "serve exited with {status}:\n{}",
        dialtone.log()
    );
    let run = sipp.await.unwrap();
    assert!(run.success, "the caller got no BYE:\n{}", run.output);

    let log = SqliteLog::open(dialtone.data_dir.path().join("data/events.db"), "check").unwrap();
    let start = dialtone_events::Cursor::start();
    let events = log.read_all(&start, 10_000).await.unwrap();
    let completed = events
        .iter()
        .find(|r| r.event.event_type == "dialtone.call.completed")
        .expect("call.completed was flushed to the log");
    let data: Value = serde_json::from_str(completed.event.data.get()).unwrap();
    assert_eq!(data["status"], "completed");
    assert_eq!(data["hangup_by"], "dialtone");
}

/// `dialtone rebuild`: read models lost or damaged while the server is stopped come back,
/// whole, from the log; an unknown projection is refused with the list of known ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_restores_the_read_models_from_the_log() {
    let mut dialtone = Dialtone::start(Backend::Sqlite).await;
    dialtone
        .provision("+14155550177", "http://127.0.0.1:9/voice", None)
        .await;
    let status = tokio::task::block_in_place(|| dialtone.stop());
    assert!(status.success(), "serve exited with {status}");
    let data = dialtone.data_dir.path().join("data");
    let read_models = data.join("readmodels.db");
    let numbers = |db: &std::path::Path| -> Vec<String> {
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn.prepare("SELECT phone_number FROM numbers").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(numbers(&read_models), ["+14155550177"]);
    rusqlite::Connection::open(&read_models)
        .unwrap()
        .execute("DELETE FROM numbers", [])
        .unwrap();
    assert!(numbers(&read_models).is_empty());

    let rebuild = |extra: &[&str]| {
        Command::new(binary())
            .args(["rebuild", "--data-dir"])
            .arg(&data)
            .args(extra)
            .output()
            .unwrap()
    };
    let output = rebuild(&[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for projection in [
        "accounts",
        "numbers",
        "calls",
        "billing",
        "recordings",
        "callbacks",
        "conferences",
    ] {
        assert!(
            stdout.contains(&format!("projection={projection} events=")),
            "{projection} not rebuilt:\n{stdout}"
        );
    }
    assert_eq!(numbers(&read_models), ["+14155550177"]);

    let refused = rebuild(&["--projection", "nope"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("no projection \"nope\""), "{stderr}");
}
