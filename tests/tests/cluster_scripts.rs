//! `infra/cluster/up.sh` and `down.sh`: a local cluster on loopback addresses (broker,
//! Kamailio, two voice nodes, an API node) that a user can call into, and stop again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use dialtone_tests::{eventually, RtpSink, Sipp, TwimlApp};
use serde_json::Value;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../infra/cluster")
        .join(name)
}

fn pid_in(pid_file: &std::path::Path) -> u32 {
    std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|pid| pid.lines().next()?.trim().parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no pid in {}", pid_file.display()))
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Stops the cluster even when an assertion fails.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(script("down.sh")).arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_a_cluster_that_takes_calls_and_down_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL runs as the `postgres` user when the tests run as root: it must reach DIR.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let state = dir.path().join("cluster");
    let up = tokio::task::spawn_blocking({
        let state = state.clone();
        move || {
            Command::new(script("up.sh"))
                .arg(&state)
                .env("DIALTONE_BIN", dialtone_tests::dialtone::binary())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let down = Down(state.clone());
    assert!(
        up.status.success(),
        "up.sh failed:\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let printed: HashMap<String, String> = String::from_utf8_lossy(&up.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for name in ["SIP", "API", "PG", "KAFKA", "AC", "TOKEN"] {
        assert!(printed.contains_key(name), "no {name} in {printed:?}");
    }
    let (api, ac, token) = (&printed["API"], &printed["AC"], &printed["TOKEN"]);
    let http = reqwest::Client::new();

    // Every node reports its roles and a reachable log.
    for (host, roles) in [
        ("127.0.0.3", "roles: voice\n"),
        ("127.0.0.4", "roles: voice\n"),
        ("127.0.0.5", "roles: api,callbacks,projector\n"),
    ] {
        let health = http
            .get(format!("http://{host}:8080/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        let text = health.text().await.unwrap();
        assert!(
            text.contains(roles) && text.contains("log: kafka (ok)"),
            "{text}"
        );
    }

    // A number on the API node, called through Kamailio.
    let app = TwimlApp::start().await;
    app.set_auth_token(token);
    app.twiml(
        "/voice",
        r#"<Response><Say>Hello from the cluster.</Say></Response>"#,
    );
    let created = http
        .post(format!(
            "{api}/2010-04-01/Accounts/{ac}/IncomingPhoneNumbers.json"
        ))
        .basic_auth(ac, Some(token))
        .form(&[
            ("PhoneNumber", "+14155550188"),
            ("VoiceUrl", &app.url("/voice")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // The voice nodes learn the number from the log.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let rtp = RtpSink::start();
    let run = Sipp::scenario("proxied_call.xml")
        .key("dialed", "+14155550188")
        .key("rtp_port", rtp.port)
        .calls(20)
        .rate(10)
        .pause_ms(300)
        .run(printed["SIP"].clone())
        .await;
    assert!(run.success, "{}", run.output);

    let calls: Vec<Value> = eventually(30, "20 completed calls", || async {
        let page: Value = http
            .get(format!(
                "{api}/2010-04-01/Accounts/{ac}/Calls.json?PageSize=100"
            ))
            .basic_auth(ac, Some(token))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let calls = page["calls"].as_array()?.clone();
        (calls.len() == 20 && calls.iter().all(|c| c["status"] == "completed")).then_some(calls)
    })
    .await;
    // The billing team's database holds the same calls, billed.
    let (pg, connection) = tokio_postgres::connect(&printed["PG"], tokio_postgres::NoTls)
        .await
        .expect("connecting to the cluster's PostgreSQL");
    tokio::spawn(connection);
    let shared = eventually(30, "the 20 calls in PostgreSQL", || async {
        let row = pg
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'completed'), \
                 (SELECT COALESCE(SUM(count), 0)::bigint FROM usage_daily \
                  WHERE category = 'calls-inbound') FROM calls",
                &[],
            )
            .await
            .ok()?;
        let (calls, billed): (i64, i64) = (row.get(0), row.get(1));
        (calls == 20 && billed == 20).then_some(calls)
    })
    .await;
    assert_eq!(shared, 20);
    drop(pg);

    let mut owners = std::collections::BTreeSet::new();
    for call in &calls {
        let events: Vec<Value> = http
            .get(format!(
                "{api}/v1/Accounts/{ac}/Calls/{}/Events",
                call["sid"].as_str().unwrap()
            ))
            .basic_auth(ac, Some(token))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        owners.insert(events[0]["data"]["owner_node"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        owners.into_iter().collect::<Vec<_>>(),
        ["voice-1", "voice-2"]
    );

    // down.sh stops every process.
    let pids: Vec<(&str, u32)> = [
        "kamailio/pid",
        "voice-1/pid",
        "voice-2/pid",
        "api-1/pid",
        "broker/tansu.pid",
        "postgres/data/postmaster.pid",
    ]
    .into_iter()
    .map(|file| (file, pid_in(&state.join(file))))
    .collect();
    assert!(pids.iter().all(|(_, pid)| alive(*pid)));
    drop(down);
    for (file, pid) in pids {
        assert!(!alive(pid), "{file}: {pid} still running");
    }
    assert!(
        std::net::UdpSocket::bind("127.0.0.2:5060").is_ok(),
        "kamailio's port is free"
    );
}
