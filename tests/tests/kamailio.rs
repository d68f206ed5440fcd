//! The cluster's SIP front: real Kamailio (`infra/kamailio/dialtone.cfg`) load-balancing
//! sipp's calls over two voice nodes on one Kafka log. New calls spread over the healthy
//! nodes; in-dialog requests from either side pass the proxy and reach the call's owner; a
//! node that dies mid-load leaves no call unfinished and stops getting new calls; with no
//! healthy node the caller gets 503.

use std::time::Duration;

use dialtone_tests::{
    eventually, Dialtone, Kamailio, NodeOptions, Postgres, RtpSink, Sipp, TwimlApp,
};

const NUMBER: &str = "+14155550177";
const LIVENESS: &str = "[cluster]\nheartbeat_ms = 300\nlease_ms = 1500\n";
const FINAL: [&str; 5] = ["completed", "busy", "failed", "no-answer", "canceled"];

struct Cluster {
    a: Dialtone,
    b: Dialtone,
    kamailio: Kamailio,
    _app: TwimlApp,
}

async fn cluster(name: &str, read_models: Option<String>) -> Cluster {
    let node = |id: &str, first| NodeOptions {
        extra_toml: LIVENESS.to_owned(),
        read_models: read_models.clone(),
        ..NodeOptions::member(name, id, first)
    };
    let a = Dialtone::start_node(node("voice-a", None)).await;
    let b = Dialtone::start_node(node("voice-b", Some(&a))).await;
    let app = TwimlApp::start().await;
    app.set_auth_token(&a.auth_token);
    app.twiml(
        "/voice",
        r#"<Response><Say>Thank you for calling.</Say><Pause length="60"/></Response>"#,
    );
    a.provision(NUMBER, &app.url("/voice"), None).await;
    eventually(30, "voice-b to know the number", || async {
        let (_, numbers) = b.get("IncomingPhoneNumbers.json").await;
        numbers["incoming_phone_numbers"]
            .as_array()
            .filter(|n| !n.is_empty())
            .map(|_| ())
    })
    .await;
    let kamailio = Kamailio::start(&[a.sip_addr(), b.sip_addr()]);
    // Both nodes answer the first probes before the load starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Cluster {
        a,
        b,
        kamailio,
        _app: app,
    }
}

/// A counter of the node's `/metrics` (0 when absent).
async fn counter(node: &Dialtone, name: &str) -> u64 {
    node.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A cumulative counter of sipp's statistics screen (`Successful call`, `Failed call`).
fn sipp_counter(output: &str, name: &str) -> usize {
    output
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .and_then(|l| l.rsplit('|').next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {output}"))
}

/// Who owns `sid` (the `owner_node` of its `call.initiated`).
async fn owner(node: &Dialtone, sid: &str) -> String {
    node.call_events(sid).await[0]["data"]["owner_node"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_kamailio_spread_over_both_nodes_and_in_dialog_requests_reach_the_owner() {
    let c = cluster("kamailio-spread", None).await;

    // 200 calls; each caller hangs up with a BYE that must pass Kamailio to the owner.
    let rtp = RtpSink::start();
    let run = Sipp::scenario("proxied_call.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .calls(200)
        .rate(25)
        .pause_ms(300)
        .run(c.kamailio.addr())
        .await;
    assert!(run.success, "{}\n{}", run.output, c.kamailio.log());

    let (on_a, on_b) = eventually(30, "200 calls completed", || async {
        let a = counter(&c.a, "dialtone_calls_completed_total").await;
        let b = counter(&c.b, "dialtone_calls_completed_total").await;
        (a + b >= 200).then_some((a, b))
    })
    .await;
    assert_eq!(on_a + on_b, 200);
    assert!(on_a >= 60 && on_b >= 60, "voice-a {on_a}, voice-b {on_b}");
    let (_, page) = c.a.get("Calls.json?PageSize=1000").await;
    let calls = page["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 200);
    assert!(calls.iter().all(|call| call["status"] == "completed"));

    // Dialtone hangs up (REST, through the node that does not own the call): its BYE
    // follows the Record-Route set through Kamailio to the caller.
    let rtp = RtpSink::start();
    let caller = tokio::spawn(
        Sipp::scenario("proxied_dialtone_hangs_up.xml")
            .key("dialed", NUMBER)
            .key("rtp_port", rtp.port)
            .run(c.kamailio.addr()),
    );
    let call = eventually(30, "the call in progress", || async {
        c.a.calls()
            .await
            .into_iter()
            .find(|call| call["status"] == "in-progress")
    })
    .await;
    let sid = call["sid"].as_str().unwrap().to_owned();
    let other = if owner(&c.a, &sid).await == "voice-a" {
        &c.b
    } else {
        &c.a
    };
    let (status, body) = other
        .post(&format!("Calls/{sid}.json"), &[("Status", "completed")])
        .await;
    assert_eq!(status, 200, "{body}");
    let hung_up = caller.await.unwrap();
    assert!(hung_up.success, "{}\n{}", hung_up.output, c.kamailio.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_node_killed_mid_load_leaves_no_call_unfinished_and_gets_no_new_calls() {
    // Both nodes also project, sharing the read models in PostgreSQL.
    let postgres = Postgres::start();
    let mut c = cluster("kamailio-kill", Some(postgres.url())).await;

    // 40 calls of 6 s each; voice-b dies while they are up.
    let rtp = RtpSink::start();
    let load = tokio::spawn(
        Sipp::scenario("proxied_call.xml")
            .key("dialed", NUMBER)
            .key("rtp_port", rtp.port)
            .calls(40)
            .rate(20)
            .pause_ms(6_000)
            .run(c.kamailio.addr()),
    );
    eventually(30, "calls up on both nodes", || async {
        let calls = c.a.calls().await;
        let live = calls
            .iter()
            .filter(|call| call["status"] == "in-progress")
            .count();
        (live >= 30).then_some(())
    })
    .await;
    c.b.kill();
    // Within 30 s of the kill every call is in a final state: the survivor's when their
    // callers hang up, the dead node's once its lease expired.
    let calls = eventually(30, "every call in a final state", || async {
        let calls = c.a.calls().await;
        calls
            .iter()
            .all(|call| FINAL.contains(&call["status"].as_str().unwrap_or("")))
            .then_some(calls)
    })
    .await;
    // An INVITE voice-b took (100 Trying) but died before logging is no call of the log: its
    // caller times out, as with any proxy once a node has answered.
    assert!(calls.len() >= 36, "{} calls", calls.len());
    let load = load.await.unwrap();
    let succeeded = sipp_counter(&load.output, "Successful call");
    let mut survivors = 0;
    let mut adopted = 0;
    for call in &calls {
        let sid = call["sid"].as_str().unwrap();
        let events = c.a.call_events(sid).await;
        let completed = events
            .iter()
            .find(|e| e["type"] == "dialtone.call.completed")
            .unwrap_or_else(|| panic!("{sid} never completed: {events:?}"));
        match events[0]["data"]["owner_node"].as_str() {
            // The survivor's calls end normally: the caller hung up.
            Some("voice-a") => {
                survivors += 1;
                assert_eq!(call["status"], "completed", "{call}");
                assert_eq!(completed["data"]["hangup_by"], "caller", "{completed}");
            }
            // The dead node's calls are ended by the survivor, billed to its last heartbeat.
            Some("voice-b") => {
                adopted += 1;
                assert_eq!(
                    completed["data"]["hangup_by"], "node-failure",
                    "{completed}"
                );
                assert!(
                    events.iter().any(|e| e["type"] == "dialtone.call.adopted"
                        && e["data"]["by_node"] == "voice-a"),
                    "{events:?}"
                );
            }
            other => panic!("owner {other:?}"),
        }
    }
    assert!(survivors >= 10 && adopted >= 10, "{survivors} / {adopted}");
    // Every call the survivor owned completed for its caller (failed-over ones included).
    assert_eq!(succeeded, survivors, "{}", load.output);

    // Usage in the survivor's read models is exactly what the Kafka events give.
    let output = c.a.cli(&["billing", "reconcile"]);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // And PostgreSQL's usage, written by both nodes until one died, then by the survivor
    // alone, is the same to the micro-unit.
    let client = postgres.client().await;
    let local = |path: std::path::PathBuf| {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row(
            "SELECT COALESCE(SUM(count), 0), COALESCE(SUM(minutes), 0), \
             COALESCE(SUM(price_micros), 0), COUNT(*) FROM usage_daily",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
    };
    let recomputed: (i64, i64, i64, i64) = local(c.a.read_models_path());
    assert!(recomputed.2 > 0, "{recomputed:?}");
    eventually(
        30,
        "PostgreSQL's usage to equal the recomputed usage",
        || async {
            let row = client
                .query_one(
                    "SELECT COALESCE(SUM(count), 0)::bigint, COALESCE(SUM(minutes), 0)::bigint, \
                 COALESCE(SUM(price_micros), 0)::bigint, COUNT(*) FROM usage_daily",
                    &[],
                )
                .await
                .ok()?;
            let shared: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
            (shared == recomputed).then_some(())
        },
    )
    .await;

    // The dead node no longer answers probes: new calls all go to voice-a, and succeed.
    let before = counter(&c.a, "dialtone_calls_completed_total").await;
    let rtp = RtpSink::start();
    let run = Sipp::scenario("proxied_call.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .calls(20)
        .rate(10)
        .pause_ms(200)
        .run(c.kamailio.addr())
        .await;
    assert!(run.success, "{}\n{}", run.output, c.kamailio.log());
    eventually(20, "20 more calls on voice-a", || async {
        (counter(&c.a, "dialtone_calls_completed_total").await >= before + 20).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_with_no_healthy_node_answers_503() {
    let nobody = format!("127.0.0.1:{}", dialtone_tests::free_sip_port());
    let kamailio = Kamailio::start(&[nobody]);
    let run = Sipp::scenario("inbound_overloaded.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", 4000)
        .run(kamailio.addr())
        .await;
    assert!(run.success, "{}\n{}", run.output, kamailio.log());
}
