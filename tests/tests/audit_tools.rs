//! The auditor's and the billing team's tools on a real call, on both log backends: the
//! call's timeline (`dialtone calls history`), `events tail`, an account export checked by
//! the offline Python verifier (an edited line is caught), `audit verify` per account and
//! stream, and the API's `AsOf` queries (a call as of a time during it is `in-progress`) and
//! `Usage/Records.csv`.

use dialtone_tests::{Backend, Dialtone, Sipp, TwimlApp};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const NUMBER: &str = "+14155550170";

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn run_ok(dialtone: &Dialtone, args: &[&str]) -> String {
    let output = dialtone.cli(args);
    assert!(
        output.status.success(),
        "dialtone {args:?} failed: {}\n{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

fn verify_py(file: &std::path::Path) -> (i32, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/audit/verify.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(file)
        .output()
        .expect("python3");
    (output.status.code().unwrap_or(-1), stdout(&output))
}

async fn call_history_export_and_as_of(backend: Backend) {
    let app = TwimlApp::start().await;
    let dialtone = Dialtone::start(backend).await;
    app.set_auth_token(&dialtone.auth_token);
    app.twiml(
        "/voice",
        r#"<Response><Say>Your order has shipped.</Say><Pause length="30"/></Response>"#,
    );
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let before_call = OffsetDateTime::now_utc();
    let run = Sipp::scenario("inbound_call.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", 40_170)
        .pause_ms(3_000)
        .run(dialtone.sip_addr())
        .await;
    run.assert_success("sipp failed", &dialtone);
    let call = dialtone.finished_call().await;
    let call_sid = call["sid"].as_str().unwrap().to_owned();
    assert_eq!(call["price"], "-0.00850", "{call}");

    // As of a time during the call: in progress, not ended, not priced.
    let answered = OffsetDateTime::parse(
        call["start_time"].as_str().unwrap(),
        &time::format_description::well_known::Rfc2822,
    )
    .unwrap();
    let during = (answered + time::Duration::seconds(2))
        .format(&Rfc3339)
        .unwrap();
    let (status, then) = dialtone
        .get(&format!(
            "Calls/{call_sid}.json?AsOf={}",
            during.replace('+', "%2B")
        ))
        .await;
    assert_eq!(status, 200, "{then}");
    assert_eq!(then["status"], "in-progress", "{then}");
    assert_eq!(then["end_time"], Value::Null);
    assert_eq!(then["price"], Value::Null);
    let (status, now) = dialtone
        .get(&format!(
            "Calls/{call_sid}.json?AsOf={}",
            OffsetDateTime::now_utc().format(&Rfc3339).unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(now["status"], "completed");
    assert_eq!(now["price"], "-0.00850");
    let (status, _) = dialtone
        .get(&format!(
            "Calls/{call_sid}.json?AsOf={}",
            before_call.format(&Rfc3339).unwrap()
        ))
        .await;
    assert_eq!(status, 404, "the call did not exist yet");
    for bad in ["yesterday", "2999-01-01T00:00:00Z"] {
        let (status, body) = dialtone
            .get(&format!("Calls/{call_sid}.json?AsOf={bad}"))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["message"].as_str().unwrap().contains("AsOf"), "{body}");
    }

    // The same by position: `events tail` names each event's position.
    let tail = run_ok(
        &dialtone,
        &[
            "events",
            "tail",
            "--subject",
            &call_sid,
            "--from",
            "0",
            "--json",
        ],
    );
    let lines: Vec<Value> = tail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let answered_line = lines
        .iter()
        .find(|l| l["event"]["type"] == "dialtone.call.answered")
        .expect("call.answered in the tail");
    assert!(lines
        .iter()
        .all(|l| l["event"]["subject"] == call_sid.as_str()));
    let position = answered_line["position"].as_str().unwrap();
    let (status, then) = dialtone
        .get(&format!("Calls/{call_sid}.json?AsOf={position}"))
        .await;
    assert_eq!(status, 200, "{then}");
    assert_eq!(then["status"], "in-progress", "{then}");

    // Usage as of before the call, and now; CSV.
    let usage_count = |body: &Value| {
        body["usage_records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["category"] == "calls-inbound")
            .map(|r| r["count"].as_str().unwrap().to_owned())
    };
    let (_, earlier) = dialtone
        .get(&format!(
            "Usage/Records.json?AsOf={}",
            during.replace('+', "%2B")
        ))
        .await;
    assert_eq!(usage_count(&earlier).as_deref(), Some("0"), "{earlier}");
    let (_, today) = dialtone.get("Usage/Records.json").await;
    assert_eq!(usage_count(&today).as_deref(), Some("1"), "{today}");
    let csv = reqwest::Client::new()
        .get(format!(
            "{}/2010-04-01/Accounts/{}/Usage/Records.csv",
            dialtone.http_url, dialtone.account_sid
        ))
        .basic_auth(&dialtone.account_sid, Some(&dialtone.auth_token))
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    assert!(
        csv.starts_with("account_sid,category,description,"),
        "{csv}"
    );
    assert!(
        csv.lines()
            .any(|l| l.contains(",calls-inbound,") && l.contains(",1,calls,1,minutes,0.00850,usd,")),
        "{csv}"
    );

    // The call's timeline.
    let history = run_ok(&dialtone, &["calls", "history", &call_sid]);
    for expected in [
        "call.initiated",
        "inbound +14155550199 → +14155550170",
        "call.webhook.requested",
        "call.webhook.responded",
        "HTTP 200",
        "<Say>",
        "Your order has shipped.",
        "call.answered",
        "call.completed",
        "charge: 1 min calls-inbound × 0.008500 USD = 0.008500 USD (rated by config)",
    ] {
        assert!(history.contains(expected), "no {expected:?} in:\n{history}");
    }
    let history: Value = serde_json::from_str(&run_ok(
        &dialtone,
        &["calls", "history", &call_sid, "--json"],
    ))
    .unwrap();
    assert_eq!(history["call_sid"], call_sid.as_str());
    assert_eq!(history["charge"]["price_micros"], 8_500);
    let offsets: Vec<i64> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets[0], 0);
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    assert!(*offsets.last().unwrap() >= 3_000, "{offsets:?}");
    let missing = dialtone.cli(&["calls", "history", "CA00000000000000000000000000000000"]);
    assert_eq!(missing.status.code(), Some(1));

    // Integrity: per account and per stream.
    let verified = run_ok(
        &dialtone,
        &["audit", "verify", "--account", &dialtone.account_sid],
    );
    assert!(verified.starts_with("ok: "), "{verified}");
    let verified = run_ok(&dialtone, &["audit", "verify", "--stream", &call_sid]);
    assert!(verified.starts_with("ok: 1 streams"), "{verified}");

    // The export, verified offline; then edited, and caught.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    run_ok(
        &dialtone,
        &[
            "audit",
            "export",
            "--account",
            &dialtone.account_sid,
            "-o",
            file.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.lines().count() > 10);
    let (code, out) = verify_py(&file);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: "), "{out}");
    let edited_at = text
        .lines()
        .position(|l| l.contains("Your order has shipped."))
        .expect("the say command in the export");
    let edited: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == edited_at {
                l.replace("Your order has shipped.", "Your order was cancelled.")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&file, edited.join("\n") + "\n").unwrap();
    let (code, out) = verify_py(&file);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(&format!("line {}:", edited_at + 1)),
        "{out}"
    );
    // A removed line breaks its stream's chain at the next one.
    let removed: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != edited_at)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&file, removed.join("\n") + "\n").unwrap();
    let (code, out) = verify_py(&file);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("sequence"), "{out}");
    // An export limited in time starts streams mid-way: anchored, intact.
    let limited = dir.path().join("limited.jsonl");
    run_ok(
        &dialtone,
        &[
            "audit",
            "export",
            "--account",
            &dialtone.account_sid,
            "--from",
            &during,
            "-o",
            limited.to_str().unwrap(),
        ],
    );
    let (code, out) = verify_py(&limited);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{call_sid} starts at sequence")),
        "{out}"
    );

    // events tail filters by type and account.
    let tail = run_ok(
        &dialtone,
        &[
            "events",
            "tail",
            "--account",
            &dialtone.account_sid,
            "--type",
            "dialtone.number.*",
            "-n",
            "5",
        ],
    );
    assert!(tail.contains("number.provisioned"), "{tail}");
    assert!(!tail.contains("call."), "{tail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_call_history_export_and_as_of() {
    call_history_export_and_as_of(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_call_history_export_and_as_of() {
    call_history_export_and_as_of(Backend::Kafka).await;
}
