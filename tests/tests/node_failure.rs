//! Node failure: a node that dies leaves no call `in-progress` for ever. On Kafka another
//! node ends the dead node's calls once its lease expires; a node restarted under the same id
//! ends its own calls of before the crash; a second process cannot take a live node's id.

use std::time::Duration;

use dialtone_tests::{eventually, Backend, Dialtone, NodeOptions, RtpSink, Sipp, TwimlApp};
use serde_json::Value;

const LIVENESS: &str = "[cluster]\nheartbeat_ms = 300\nlease_ms = 1500\n";
const NUMBER: &str = "+14155550166";

async fn app_for(dialtone: &Dialtone) -> TwimlApp {
    let app = TwimlApp::start().await;
    app.set_auth_token(&dialtone.auth_token);
    app.twiml(
        "/voice",
        r#"<Response><Say>Please hold.</Say><Pause length="60"/></Response>"#,
    );
    app
}

/// Calls `edge` from sipp (hanging up after `hold_ms`) and waits until `observer` sees the
/// call in progress; returns its SID.
async fn live_call(edge: &Dialtone, observer: &Dialtone, hold_ms: u64) -> String {
    let rtp = RtpSink::start();
    let caller = Sipp::scenario("inbound_call.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .pause_ms(hold_ms)
        .run(edge.sip_addr());
    // The caller's fate does not matter: its node dies under it.
    tokio::spawn(async move {
        let _rtp = rtp;
        caller.await
    });
    let call = eventually(30, "the call in progress", || async {
        observer
            .calls()
            .await
            .into_iter()
            .find(|c| c["status"] == "in-progress")
    })
    .await;
    call["sid"].as_str().unwrap().to_owned()
}

fn of_type<'a>(events: &'a [Value], t: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["type"] == t)
        .unwrap_or_else(|| panic!("no {t} in {events:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_after_a_crash_ends_the_calls_it_owned() {
    let mut node = Dialtone::start_with(Backend::Sqlite, LIVENESS).await;
    let app = app_for(&node).await;
    node.provision(NUMBER, &app.url("/voice"), None).await;
    let sid = live_call(&node, &node, 20_000).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.crash_and_restart().await;

    let call = eventually(20, "the call ended", || async {
        let (_, call) = node.get(&format!("Calls/{sid}.json")).await;
        (call["status"] == "completed").then_some(call)
    })
    .await;
    let duration: u64 = call["duration"].as_str().unwrap().parse().unwrap();
    assert!(
        (1..=4).contains(&duration),
        "billed up to the last heartbeat: {call}"
    );
    assert_eq!(call["price"], "-0.00850", "{call}");
    let events = node.call_events(&sid).await;
    let adopted = of_type(&events, "dialtone.call.adopted");
    assert_eq!(adopted["data"]["reason"], "node-restart");
    assert_eq!(adopted["data"]["owner_node"], "e2e");
    let completed = of_type(&events, "dialtone.call.completed");
    assert_eq!(completed["data"]["hangup_by"], "node-failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_cannot_take_a_live_node_id() {
    let node = Dialtone::start_with(Backend::Sqlite, LIVENESS).await;
    let config = std::fs::read_to_string(node.config_path()).unwrap();
    let other_http = dialtone_tests::free_port(false);
    let other_sip = dialtone_tests::free_sip_port();
    let twin = config
        .lines()
        .map(|line| {
            if line.starts_with("http_addr") {
                format!("http_addr = \"127.0.0.1:{other_http}\"")
            } else if line.starts_with("sip_addr") {
                format!("sip_addr = \"127.0.0.1:{other_sip}\"")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let twin_config = dir.path().join("twin.toml");
    std::fs::write(&twin_config, twin).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(dialtone_tests::dialtone::binary())
            .args(["serve", "--config"])
            .arg(&twin_config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success(), "the twin started");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("node id \"e2e\" is alive"), "{stderr}");
    // The first node is untouched.
    let (status, _) = node.get("Calls.json").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surviving_node_ends_the_calls_of_a_dead_one() {
    let node = |id: &str, first| NodeOptions {
        extra_toml: LIVENESS.to_owned(),
        ..NodeOptions::member("failure", id, first)
    };
    let survivor = Dialtone::start_node(node("node-a", None)).await;
    let mut doomed = Dialtone::start_node(node("node-b", Some(&survivor))).await;
    let app = app_for(&survivor).await;
    survivor.provision(NUMBER, &app.url("/voice"), None).await;
    eventually(30, "node-b to know the number", || async {
        let (_, numbers) = doomed.get("IncomingPhoneNumbers.json").await;
        numbers["incoming_phone_numbers"]
            .as_array()
            .filter(|n| !n.is_empty())
            .map(|_| ())
    })
    .await;
    let sid = live_call(&doomed, &survivor, 15_000).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    doomed.kill();

    let call = eventually(30, "the dead node's call ended by the survivor", || async {
        let (_, call) = survivor.get(&format!("Calls/{sid}.json")).await;
        (call["status"] == "completed").then_some(call)
    })
    .await;
    assert!(call["price"].as_str().is_some(), "billed: {call}");
    let events = survivor.call_events(&sid).await;
    let adopted = of_type(&events, "dialtone.call.adopted");
    assert_eq!(adopted["data"]["owner_node"], "node-b");
    assert_eq!(adopted["data"]["by_node"], "node-a");
    assert_eq!(adopted["data"]["reason"], "node-failure");
    assert_eq!(adopted["source"], "dialtone://node-a");
    assert_eq!(
        of_type(&events, "dialtone.call.completed")["data"]["hangup_by"],
        "node-failure"
    );
}
