//! Paying per minute, end to end: a prepaid account with ten seconds of credit is cut at
//! ten seconds, its balance goes down by exactly the call's charge, and once it is used up
//! the account's number refuses calls until the operator credits it again (CLI and REST).

use dialtone_tests::{eventually, Backend, Dialtone, RtpSink, Sipp, TwimlApp};
use serde_json::Value;

const NUMBER: &str = "+14155550181";

async fn balance(dialtone: &Dialtone) -> String {
    let (status, body) = dialtone.get("Balance.json").await;
    assert_eq!(status, 200, "{body}");
    body["balance"].as_str().unwrap().to_owned()
}

fn cli_ok(dialtone: &Dialtone, args: &[&str]) -> Value {
    let output = dialtone.cli(args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepaid_account_is_cut_when_its_credit_runs_out() {
    // 0.06 a minute: 0.01 buys ten seconds.
    let dialtone = Dialtone::start_with(
        Backend::Sqlite,
        "[billing]\nper_minute = { \"calls-inbound\" = \"0.06\" }\n",
    )
    .await;
    let app = TwimlApp::start().await;
    app.set_auth_token(&dialtone.auth_token);
    app.twiml(
        "/voice",
        r#"<Response><Say>Go ahead.</Say><Pause length="40"/></Response>"#,
    );
    dialtone.provision(NUMBER, &app.url("/voice"), None).await;
    let account = dialtone.account_sid.clone();
    cli_ok(&dialtone, &["billing", "plan", &account, "--prepaid"]);
    let credited = cli_ok(
        &dialtone,
        &["billing", "credit", &account, "0.01", "--reference", "test"],
    );
    assert_eq!(credited["currency"], "USD");
    // Not exact in cents: refused, nothing written.
    let refused = dialtone.cli(&["billing", "credit", &account, "0.001"]);
    assert!(!refused.status.success());
    eventually(10, "the credit in the balance", || async {
        (balance(&dialtone).await == "0.01000").then_some(())
    })
    .await;

    // The call is cut when the ten seconds are used up (Dialtone sends the BYE).
    let rtp = RtpSink::start();
    let caller = Sipp::scenario("inbound_dialtone_hangs_up.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .run(dialtone.sip_addr())
        .await;
    caller.assert_success("the caller", &dialtone);
    let call = dialtone.finished_call().await;
    let duration: u64 = call["duration"].as_str().unwrap().parse().unwrap();
    assert!((9..=11).contains(&duration), "cut at ten seconds: {call}");
    let events = dialtone.call_events(call["sid"].as_str().unwrap()).await;
    assert_eq!(events.last().unwrap()["data"]["hangup_by"], "dialtone");
    // One started minute charged: 0.01 - 0.06.
    assert_eq!(call["price"], "-0.06000", "{call}");
    eventually(10, "the charge in the balance", || async {
        (balance(&dialtone).await == "-0.05000").then_some(())
    })
    .await;

    // Nothing left: the number refuses calls.
    let refused = Sipp::scenario("inbound_forbidden.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .run(dialtone.sip_addr())
        .await;
    refused.assert_success("the refused caller", &dialtone);

    // The operator credits it through the REST endpoint (operator token only).
    let token = dialtone.cli(&["numbers", "operator-token"]);
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    let client = reqwest::Client::new();
    let credit = |amount: &'static str, bearer: String| {
        client
            .post(format!(
                "{}/v1/Accounts/{account}/Credits",
                dialtone.http_url
            ))
            .bearer_auth(bearer)
            .form(&[("Amount", amount), ("Reference", "wire 42")])
            .send()
    };
    assert_eq!(credit("1.00", "wrong".into()).await.unwrap().status(), 401);
    let bad = credit("1.005", token.clone()).await.unwrap();
    assert_eq!(bad.status(), 400);
    let good = credit("1.00", token).await.unwrap();
    let status = good.status();
    let body: Value = good.json().await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", dialtone.log());
    assert_eq!(body["balance"], "0.95000", "{body}");
    assert_eq!(body["plan"], "prepaid", "{body}");
    assert_eq!(balance(&dialtone).await, "0.95000");
}
