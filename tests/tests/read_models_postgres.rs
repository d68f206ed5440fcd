//! Read models shared in PostgreSQL (`--read-models postgres://…`), against a real server
//! initialised by the test: after calls, PostgreSQL holds exactly the rows of the node's own
//! read models (calls, billing, numbers…) with their checkpoints; a node killed mid-way, or a
//! database that goes away, converges again without losing or double-counting a row; two
//! projector nodes split the projections and one survivor takes them all.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dialtone_tests::{
    eventually, Backend, Dialtone, NodeOptions, Postgres, RtpSink, Sipp, TwimlApp,
};
use serde_json::Value;

/// Heartbeats are events: every one moves every checkpoint, so they are kept sparse for
/// the comparisons to catch quiet moments.
const SETTINGS: &str = "[cluster]\nheartbeat_ms = 1000\nlease_ms = 3000\n\
                        [billing]\nper_minute = { \"calls-inbound\" = \"0.0085\" }\n";
const PER_MINUTE_MICROS: i64 = 8_500;
const NUMBER: &str = "+14155550177";

/// The tables PostgreSQL shares (every projection but the node-local callbacks outbox).
const SHARED: &[&str] = &[
    "accounts",
    "api_keys",
    "applications",
    "numbers",
    "calls",
    "billing_rates",
    "billing_legs",
    "usage_daily",
    "recordings",
    "conferences",
    "conference_participants",
    "sinks",
    "sink_subscriptions",
    "nodes",
    "projection_checkpoints",
];

/// The projections whose work the shipper shares.
const PROJECTIONS: usize = 8;

type Rows = BTreeMap<&'static str, BTreeSet<String>>;

/// Every row of `value` as one canonical string (numbers and text compared as text: a
/// column SQLite stores untyped is TEXT in PostgreSQL).
fn canonical(row: &serde_json::Map<String, Value>) -> String {
    let fields: BTreeMap<&String, String> = row
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Null => "∅".to_owned(),
                other => other.to_string(),
            };
            (k, v)
        })
        .collect();
    format!("{fields:?}")
}

fn sqlite_rows(path: &std::path::Path, skip_projections: &[&str]) -> Rows {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch("BEGIN").unwrap();
    let mut all = Rows::new();
    for table in SHARED {
        let columns: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let object = columns
            .iter()
            .map(|c| format!("'{c}', \"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let rows: BTreeSet<String> = conn
            .prepare(&format!("SELECT json_object({object}) FROM \"{table}\""))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|json| serde_json::from_str::<Value>(&json.unwrap()).unwrap())
            .filter(|row| !skipped(table, row, skip_projections))
            .map(|row| canonical(row.as_object().unwrap()))
            .collect();
        all.insert(table, rows);
    }
    all
}

fn skipped(table: &str, row: &Value, skip_projections: &[&str]) -> bool {
    table == "projection_checkpoints"
        && skip_projections.contains(&row["projection"].as_str().unwrap_or(""))
}

async fn postgres_rows(client: &tokio_postgres::Client) -> Rows {
    let mut all = Rows::new();
    for table in SHARED {
        let rows = client
            .query(&format!("SELECT to_jsonb(t)::text FROM \"{table}\" t"), &[])
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| serde_json::from_str::<Value>(r.get::<_, &str>(0)).unwrap())
                    .map(|row| canonical(row.as_object().unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        all.insert(table, rows);
    }
    all
}

/// Waits until PostgreSQL holds exactly `node`'s shared rows.
async fn converged(node: &Dialtone, client: &tokio_postgres::Client, what: &str) -> Rows {
    let mut last = None;
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let local = sqlite_rows(&node.read_models_path(), &["callbacks"]);
            let shared = postgres_rows(client).await;
            if local == shared {
                return shared;
            }
            last = Some((local, shared));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    match outcome {
        Ok(rows) => rows,
        Err(_) => {
            let (local, shared) = last.unwrap();
            let diff: Vec<String> = SHARED
                .iter()
                .filter(|t| local[*t] != shared[*t])
                .map(|t| {
                    format!(
                        "{t}: only local {:?}\n  only shared {:?}",
                        local[t].difference(&shared[t]).collect::<Vec<_>>(),
                        shared[t].difference(&local[t]).collect::<Vec<_>>()
                    )
                })
                .collect();
            panic!(
                "PostgreSQL never matched the node's read models ({what}):\n{}\nnode log:\n{}",
                diff.join("\n"),
                node.log()
            );
        }
    }
}

async fn health(node: &Dialtone) -> (u16, String) {
    let response = reqwest::get(format!("{}/healthz", node.http_url))
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The projections a node holds, from its `/healthz` (`holds a,b (current: …)`).
async fn held(node: &Dialtone) -> Vec<String> {
    let (_, text) = health(node).await;
    text.lines()
        .find_map(|l| l.strip_prefix("read models: postgres (connected), holds "))
        .and_then(|rest| rest.split(" (current").next())
        .filter(|list| *list != "no projections")
        .map(|list| list.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

async fn short_call(node: &Dialtone, hold_ms: u64) {
    let rtp = RtpSink::start();
    Sipp::scenario("inbound_call.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .pause_ms(hold_ms)
        .run(node.sip_addr())
        .await
        .assert_success("the call failed", node);
}

async fn app_for(node: &Dialtone) -> TwimlApp {
    let app = TwimlApp::start().await;
    app.set_auth_token(&node.auth_token);
    app.twiml(
        "/voice",
        r#"<Response><Say>Thanks for calling.</Say><Pause length="30"/></Response>"#,
    );
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_holds_the_nodes_read_models_through_crashes_and_outages() {
    let mut postgres = Postgres::start();
    let mut node = Dialtone::start_node(NodeOptions {
        read_models: Some(postgres.url()),
        extra_toml: SETTINGS.to_owned(),
        ..NodeOptions::default()
    })
    .await;
    let client = postgres.client().await;
    let (status, text) = health(&node).await;
    assert_eq!(status, 200, "{text}");
    eventually(30, "the node to hold every projection", || async {
        (held(&node).await.len() == PROJECTIONS).then_some(())
    })
    .await;

    let app = app_for(&node).await;
    node.provision(NUMBER, &app.url("/voice"), None).await;
    short_call(&node, 2_500).await;
    short_call(&node, 1_200).await;
    eventually(30, "both calls billed", || async {
        let calls = node.calls().await;
        (calls.len() == 2 && calls.iter().all(|c| c["status"] == "completed")).then_some(())
    })
    .await;
    let rows = converged(&node, &client, "after two calls").await;
    assert_eq!(rows["calls"].len(), 2);
    assert!(!rows["usage_daily"].is_empty());
    // What a billing team would run: the day's inbound usage, in micro-units, from
    // PostgreSQL: two calls under a minute, one billable minute each.
    let usage: i64 = client
        .query_one(
            "SELECT COALESCE(SUM(price_micros), 0)::bigint FROM usage_daily
             WHERE category = 'calls-inbound'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(usage, 2 * PER_MINUTE_MICROS);
    let legs: i64 = client
        .query_one(
            "SELECT COALESCE(SUM(price_micros), 0)::bigint FROM billing_legs",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(legs, 2 * PER_MINUTE_MICROS);

    // A crash: the node dies with batches PostgreSQL may not have; it restarts, finds its
    // checkpoints ahead of PostgreSQL's and re-copies, so nothing is missing or doubled.
    node.crash_and_restart().await;
    short_call(&node, 1_000).await;
    let rows = converged(&node, &client, "after a crash").await;
    assert_eq!(rows["calls"].len(), 3);

    // The database goes away: the node keeps taking calls, `/healthz` says why it is not
    // healthy, and everything arrives once the database is back.
    postgres.kill();
    eventually(30, "/healthz to report the database", || async {
        let (status, text) = health(&node).await;
        (status == 503 && text.contains("read-model database unreachable")).then_some(())
    })
    .await;
    short_call(&node, 1_000).await;
    postgres.restart();
    let client = postgres.client().await;
    eventually(60, "the node to reconnect", || async {
        (health(&node).await.0 == 200).then_some(())
    })
    .await;
    let rows = converged(&node, &client, "after the database came back").await;
    assert_eq!(rows["calls"].len(), 4);
    let metrics = node.metrics().await;
    assert!(
        metrics.contains("dialtone_replica_batches_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projector_nodes_split_the_work_and_a_survivor_takes_it_all() {
    if std::env::var("DIALTONE_KAFKA_BROKERS").is_err() {
        eprintln!("skipped: DIALTONE_KAFKA_BROKERS is not set (infra/test.sh sets it)");
        return;
    }
    let postgres = Postgres::start();
    let node = |id: &str, first| NodeOptions {
        read_models: Some(postgres.url()),
        extra_toml: SETTINGS.to_owned(),
        ..NodeOptions::member("pgshare", id, first)
    };
    let mut a = Dialtone::start_node(node("node-a", None)).await;
    let b = Dialtone::start_node(node("node-b", Some(&a))).await;
    assert_eq!(a.backend, Backend::Kafka);
    let client = postgres.client().await;

    // Each takes its share: every projection is held by exactly one node.
    let (held_a, held_b) = eventually(30, "the projections split between the nodes", || async {
        let (ha, hb) = (held(&a).await, held(&b).await);
        let union: BTreeSet<&String> = ha.iter().chain(&hb).collect();
        (ha.len() == PROJECTIONS / 2 && hb.len() == PROJECTIONS / 2 && union.len() == PROJECTIONS)
            .then_some((ha, hb))
    })
    .await;
    assert!(held_a.iter().all(|p| !held_b.contains(p)));

    let app = app_for(&a).await;
    a.provision(NUMBER, &app.url("/voice"), None).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    short_call(&b, 1_500).await;
    short_call(&a, 1_000).await;
    eventually(30, "both calls completed on both nodes", || async {
        let done = |calls: Vec<Value>| {
            calls.len() == 2 && calls.iter().all(|c| c["status"] == "completed")
        };
        (done(a.calls().await) && done(b.calls().await)).then_some(())
    })
    .await;
    // Both nodes project the whole log: PostgreSQL equals either node's rows, each
    // projection written by one of them.
    converged(&a, &client, "two writers, node a").await;
    converged(&b, &client, "two writers, node b").await;

    // Node a dies: its locks go with its connection, and once its lease expires b's share
    // is everything.
    a.kill();
    eventually(30, "the survivor to hold every projection", || async {
        (held(&b).await.len() == PROJECTIONS).then_some(())
    })
    .await;
    short_call(&b, 1_000).await;
    let rows = converged(&b, &client, "after node a died").await;
    assert_eq!(rows["calls"].len(), 3);
}
