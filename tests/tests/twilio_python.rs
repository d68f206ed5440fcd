//! Twilio's helper library for Python (twilio-python, `./infra/test.sh` installs it) against
//! Dialtone with only its base URL changed: `tests/python/*.py`, each a developer's session.

use dialtone_tests::{Backend, Dialtone};

fn run(script: &str, dialtone: &Dialtone) {
    let path = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var("DIALTONE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = std::process::Command::new(python)
        .arg(&path)
        .env("DIALTONE_URL", &dialtone.http_url)
        .env("DIALTONE_AC", &dialtone.account_sid)
        .env("DIALTONE_TOKEN", &dialtone.auth_token)
        .output()
        .expect("python with twilio (DIALTONE_PYTHON; ./infra/test.sh installs it)");
    assert!(
        output.status.success(),
        "{script} failed:\n{}{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        dialtone.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_python_manages_accounts_subaccounts_and_keys() {
    let dialtone = Dialtone::start(Backend::Sqlite).await;
    tokio::task::block_in_place(|| run("accounts.py", &dialtone));
}

/// The seed's journey: a customer searches the inventory by area code, buys the first
/// number, points it at an Application, takes a call; the call's charge and the number's
/// rental are in usage and the balance went down by exactly those; suspended, its number
/// refuses calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_python_buys_a_number_takes_a_call_and_pays_for_both() {
    use dialtone_tests::{RtpSink, Sipp, TwimlApp};

    let dialtone = Dialtone::start_with(
        Backend::Sqlite,
        "[numbers]\ninventory_only = true\n\
         [billing]\nper_minute = { \"calls-inbound\" = \"0.0085\" }\n",
    )
    .await;
    let file = dialtone.data_dir.path().join("dids.csv");
    std::fs::write(
        &file,
        "number,country,type,region,locality,voice,sms,monthly_price\n\
         +14155550190,US,local,CA,San Francisco,true,true,1.15\n\
         +14155550191,US,local,CA,San Francisco,true,true,1.15\n\
         +12125550192,US,local,NY,New York,true,true,1.15\n",
    )
    .unwrap();
    assert!(dialtone
        .cli(&["numbers", "import", file.to_str().unwrap()])
        .status
        .success());
    let token = dialtone.cli(&["numbers", "operator-token"]);
    let operator_token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    // The customer's application (its auth token is the customer's: any signature is fine
    // here, the app is not checking).
    let app = TwimlApp::start().await;
    app.twiml(
        "/orders",
        "<Response><Say>Your order is on its way.</Say></Response>",
    );
    let app_url = app.url("/orders");
    let phase = |args: &[(&str, &str)], phase: &str| {
        let path = format!("{}/python/buy_and_call.py", env!("CARGO_MANIFEST_DIR"));
        let python = std::env::var("DIALTONE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let mut command = std::process::Command::new(python);
        command
            .arg(&path)
            .arg(phase)
            .env("DIALTONE_URL", &dialtone.http_url)
            .env("DIALTONE_AC", &dialtone.account_sid)
            .env("DIALTONE_TOKEN", &dialtone.auth_token)
            .env("DIALTONE_OPERATOR_TOKEN", &operator_token)
            .env("APP_URL", &app_url);
        for (name, value) in args {
            command.env(name, value);
        }
        let output = command.output().expect("python with twilio");
        assert!(
            output.status.success(),
            "buy_and_call.py {phase}:\n{}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            dialtone.log()
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let setup: serde_json::Value =
        serde_json::from_str(&tokio::task::block_in_place(|| phase(&[], "setup"))).unwrap();
    let number = setup["number"].as_str().unwrap().to_owned();
    assert_eq!(number, "+14155550190");

    let rtp = RtpSink::start();
    let caller = Sipp::scenario("inbound_dialtone_hangs_up.xml")
        .key("dialed", &number)
        .key("rtp_port", rtp.port)
        .run(dialtone.sip_addr())
        .await;
    caller.assert_success("the customer's caller", &dialtone);
    assert_eq!(app.requests_to("/orders").len(), 1);
    // The call's charge reaches the customer's balance through the projections.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| {
        phase(
            &[
                ("CUSTOMER_AC", setup["account_sid"].as_str().unwrap()),
                ("CUSTOMER_TOKEN", setup["auth_token"].as_str().unwrap()),
                ("BALANCE_BEFORE", setup["balance"].as_str().unwrap()),
            ],
            "check",
        )
    });

    // Suspended: the number refuses the next call.
    let refused = Sipp::scenario("inbound_forbidden.xml")
        .key("dialed", &number)
        .key("rtp_port", rtp.port)
        .run(dialtone.sip_addr())
        .await;
    refused.assert_success("the refused caller", &dialtone);
}
