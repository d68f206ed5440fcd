//! The seed's two use cases as the runnable apps of `examples/` (Python, twilio-python and
//! its TwiML builders), each run against Dialtone and sipp phones: the delivery
//! notification calls a customer, who presses 1 and is connected to an agent; the
//! rideshare proxy connects a passenger and a driver who each see only the proxy number.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dialtone_tests::{eventually, free_port, Backend, Dialtone, RtpSink, Sipp};
use serde_json::Value;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn python() -> String {
    std::env::var("DIALTONE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// An example's process, killed on drop.
struct Example(Child);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn example_command(dialtone: &Dialtone, script: &str, port: u16, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(python());
    command
        .arg(examples_dir().join(script))
        .env("DIALTONE_ACCOUNT_SID", &dialtone.account_sid)
        .env("DIALTONE_AUTH_TOKEN", &dialtone.auth_token)
        .env("DIALTONE_API_URL", &dialtone.http_url)
        .env("PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("PORT", port.to_string());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Starts an example's webhook server and waits until it listens.
async fn serve(dialtone: &Dialtone, script: &str, env: &[(&str, &str)]) -> (Example, u16) {
    let port = free_port(false);
    let child = example_command(dialtone, script, port, env)
        .arg("serve")
        .stdout(Stdio::null())
        .spawn()
        .expect("python with twilio (DIALTONE_PYTHON; ./infra/test.sh installs it)");
    let example = Example(child);
    eventually(20, "the example to listen", || async {
        TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    })
    .await;
    (example, port)
}

fn children_of<'a>(calls: &'a [Value], parent: &str) -> Vec<&'a Value> {
    calls
        .iter()
        .filter(|c| c["parent_call_sid"] == parent)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_notification_calls_the_customer_who_reaches_an_agent() {
    const STORE: &str = "+14155550160";
    let dialtone =
        Dialtone::start_with(Backend::Sqlite, "[outbound]\ncalls_per_second = 5.0\n").await;
    dialtone
        .provision(STORE, "http://127.0.0.1:9/unused", None)
        .await;
    let agent_rtp = RtpSink::start();
    let agent = Sipp::scenario("agent_answers_then_hangs_up.xml").key("rtp_port", agent_rtp.port);
    let agent_uri = format!("sip:agent@127.0.0.1:{}", agent.port());
    let agent = agent.spawn_uas();
    let customer_rtp = RtpSink::start();
    let customer = Sipp::scenario("customer_presses_1.xml").key("rtp_port", customer_rtp.port);
    let customer_uri = format!("sip:customer@127.0.0.1:{}", customer.port());
    let customer = customer.spawn_uas();
    let env = [("STORE_NUMBER", STORE), ("AGENT", agent_uri.as_str())];
    let (_app, port) = serve(&dialtone, "delivery_notification/app.py", &env).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The shop's system asks for the call.
    let notify = tokio::task::block_in_place(|| {
        example_command(&dialtone, "delivery_notification/app.py", port, &env)
            .args(["notify", "1042", &customer_uri])
            .output()
            .unwrap()
    });
    assert!(
        notify.status.success(),
        "{}",
        String::from_utf8_lossy(&notify.stderr)
    );
    let sid = String::from_utf8_lossy(&notify.stdout).trim().to_owned();
    assert!(sid.starts_with("CA"), "{sid}");

    agent.await.unwrap().assert_success("the agent", &dialtone);
    customer
        .await
        .unwrap()
        .assert_success("the customer", &dialtone);
    let call = eventually(20, "the notification call to complete", || async {
        let (_, call) = dialtone.get(&format!("Calls/{sid}.json")).await;
        (call["status"] == "completed").then_some(call)
    })
    .await;
    assert_eq!(call["direction"], "outbound-api");
    assert_eq!(call["from"], STORE);
    let events = dialtone.call_events(&sid).await;
    assert!(
        events.iter().any(|e| e["type"] == "dialtone.media.say"
            && e["data"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("order 1042 is out for delivery"))),
        "the status was not said: {events:?}"
    );
    assert!(events
        .iter()
        .any(|e| e["type"] == "dialtone.call.dtmf.received" && e["data"]["digit"] == "1"));
    // The agent was dialled from the shop's number and talked to the customer.
    let calls = dialtone.calls().await;
    let legs = children_of(&calls, &sid);
    assert_eq!(legs.len(), 1, "{calls:?}");
    assert_eq!(legs[0]["to"], agent_uri.as_str());
    assert_eq!(legs[0]["from"], STORE);
    assert_eq!(legs[0]["status"], "completed", "{}", legs[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rideshare_masking_connects_passenger_and_driver_through_the_proxy() {
    const PROXY: &str = "+14155550170";
    const PASSENGER: &str = "+14155550199";
    const DRIVER: &str = "+14155550188";
    // Both parties' phones are behind the carrier (the outbound trunk): one sipp phone
    // answers both calls, and checks each shows the proxy number as the caller.
    let phone_rtp = RtpSink::start();
    let phone = Sipp::scenario("phone_sees_proxy.xml")
        .key("rtp_port", phone_rtp.port)
        .calls(2);
    let trunk = format!(
        "[[trunks.outbound]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\nport = {}\ndefault = true\n",
        phone.port()
    );
    let dialtone = Dialtone::start_with(Backend::Sqlite, &trunk).await;
    let phone = phone.spawn_uas();
    let rides = format!("{PASSENGER}:{DRIVER}");
    let env = [("PROXY_NUMBER", PROXY), ("RIDES", rides.as_str())];
    let (_app, port) = serve(&dialtone, "rideshare_masking/app.py", &env).await;
    dialtone
        .provision(PROXY, &format!("http://127.0.0.1:{port}/voice"), None)
        .await;

    // The passenger calls the proxy number, then the driver does.
    let mut reached_legs = Vec::new();
    for (caller, reached) in [(PASSENGER, DRIVER), (DRIVER, PASSENGER)] {
        let rtp = RtpSink::start();
        let call = Sipp::scenario("caller_from.xml")
            .key("caller", caller)
            .key("dialed", PROXY)
            .key("rtp_port", rtp.port)
            .run(dialtone.sip_addr())
            .await;
        call.assert_success(&format!("{caller} calling the proxy"), &dialtone);
        let calls = dialtone.calls().await;
        let inbound = calls
            .iter()
            .find(|c| c["from"] == caller && c["direction"] == "inbound")
            .unwrap_or_else(|| panic!("no call from {caller}: {calls:?}"));
        let legs: Vec<Value> = children_of(&calls, inbound["sid"].as_str().unwrap())
            .into_iter()
            .cloned()
            .collect();
        reached_legs.push((reached, legs));
    }
    phone
        .await
        .unwrap()
        .assert_success("the phones saw only the proxy number", &dialtone);
    for (reached, legs) in reached_legs {
        assert_eq!(legs.len(), 1, "{legs:?}");
        // The other party was reached, seeing the proxy number, not the caller's.
        assert_eq!(legs[0]["to"], reached);
        assert_eq!(legs[0]["from"], PROXY);
        assert_eq!(legs[0]["status"], "completed", "{}", legs[0]);
    }
}
