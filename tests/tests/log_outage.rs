//! The Kafka log out of reach (its broker frozen with SIGSTOP, as a hung or partitioned broker
//! looks to a client): `/healthz` fails so a load balancer takes the node out, a write waits
//! and is acknowledged once the broker is back, nothing acknowledged is lost, and after a
//! restart the projections resume exactly (no event applied twice).

use std::process::Command;
use std::time::Duration;

use dialtone_tests::{eventually, Backend, Dialtone, NodeOptions};

/// A broker of this test's own (the suite's shared broker is not to be frozen).
struct Broker {
    dir: tempfile::TempDir,
    addr: String,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", dialtone_tests::free_port(false));
        let status = Command::new(Self::script())
            .arg("start")
            .env("DIALTONE_BROKER_DIR", dir.path())
            .env("DIALTONE_KAFKA_ADDR", &addr)
            .status()
            .unwrap();
        assert!(status.success(), "infra/kafka.sh start");
        Broker { dir, addr }
    }

    fn script() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/kafka.sh")
    }

    fn signal(&self, signal: &str) {
        let pid = std::fs::read_to_string(self.dir.path().join("tansu.pid")).unwrap();
        let status = Command::new("kill")
            .args([signal, pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = Command::new(Self::script())
            .arg("stop")
            .env("DIALTONE_BROKER_DIR", self.dir.path())
            .env("DIALTONE_KAFKA_ADDR", &self.addr)
            .status();
    }
}

async fn health(node: &Dialtone) -> (u16, String) {
    let response = reqwest::get(format!("{}/healthz", node.http_url))
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn numbers(node: &Dialtone) -> Vec<String> {
    let (_, page) = node.get("IncomingPhoneNumbers.json").await;
    let mut numbers: Vec<String> = page["incoming_phone_numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["phone_number"].as_str().unwrap().to_owned())
        .collect();
    numbers.sort();
    numbers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_log_fails_healthz_and_loses_nothing() {
    let broker = Broker::start();
    let mut node = Dialtone::start_node(NodeOptions {
        backend: Backend::Kafka,
        brokers: Some(broker.addr.clone()),
        ..NodeOptions::default()
    })
    .await;
    node.provision("+14155550301", "http://127.0.0.1:9/voice", None)
        .await;
    assert_eq!(health(&node).await.0, 200);

    // Frozen broker: the node says it is unhealthy, and why.
    broker.signal("-STOP");
    let text = eventually(20, "/healthz to fail", || async {
        let (status, text) = health(&node).await;
        (status == 503).then_some(text)
    })
    .await;
    assert!(text.starts_with("event log unreachable"), "{text}");

    // A write meanwhile waits for the log; it is acknowledged only once the broker is back.
    let writer = {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/IncomingPhoneNumbers.json",
            node.http_url, node.account_sid
        );
        let (sid, token) = (node.account_sid.clone(), node.auth_token.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .basic_auth(sid, Some(token))
                .form(&[
                    ("PhoneNumber", "+14155550302"),
                    ("VoiceUrl", "http://127.0.0.1:9/v"),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !writer.is_finished(),
        "a write was acknowledged while the log was frozen"
    );
    broker.signal("-CONT");
    assert_eq!(writer.await.unwrap(), 201);
    eventually(20, "/healthz to recover", || async {
        (health(&node).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(numbers(&node).await, ["+14155550301", "+14155550302"]);

    // Restarted, the node resumes its projections exactly where they were.
    node.restart().await;
    assert_eq!(numbers(&node).await, ["+14155550301", "+14155550302"]);
    let audit = node.cli(&["audit", "verify"]);
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );
}
