//! The operator's number inventory, end to end: `dialtone numbers import` loads a CSV into
//! a running server's log (good rows in, each bad row reported with its line), the operator
//! endpoint takes the same CSV with the operator token, accounts search and buy from it
//! (only from it, with `inventory_only`), and a bought number takes calls.

use dialtone_tests::{eventually, Backend, Dialtone, RtpSink, Sipp, TwimlApp};
use serde_json::Value;

const INVENTORY: &str = "number,country,type,region,locality,voice,sms,monthly_price
+14155550140,US,local,CA,San Francisco,true,true,1.15
+14155550141,US,local,CA,San Francisco,true,false,1.15
+12125550142,US,local,NY,New York,true,true,1.15
+14155550143,US,landline,CA,San Francisco,true,true,1.15
";

fn found(body: &Value) -> Vec<String> {
    body["available_phone_numbers"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|n| n["phone_number"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_stocks_numbers_and_accounts_buy_them() {
    let dialtone =
        Dialtone::start_with(Backend::Sqlite, "[numbers]\ninventory_only = true\n").await;
    let file = dialtone.data_dir.path().join("dids.csv");
    std::fs::write(&file, INVENTORY).unwrap();
    let output = dialtone.cli(&["numbers", "import", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The bad row is named (and the exit status says so); the good ones loaded.
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("dids.csv:5: type must be"), "{stderr}");
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["stocked"], 3, "{stdout}");
    assert_eq!(summary["refused"][0]["line"], 5, "{stdout}");

    let search = "AvailablePhoneNumbers/US/Local.json?AreaCode=415";
    let available = eventually(10, "the stocked numbers to be searchable", || async {
        let (_, body) = dialtone.get(search).await;
        let numbers = found(&body);
        (numbers.len() == 2).then_some(numbers)
    })
    .await;
    assert_eq!(available, ["+14155550140", "+14155550141"]);

    // The operator endpoint: the same CSV, with the operator token only.
    let token = dialtone.cli(&["numbers", "operator-token"]);
    assert!(token.status.success());
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    let client = reqwest::Client::new();
    let import = |bearer: String| {
        client
            .post(format!("{}/v1/PhoneNumberInventory", dialtone.http_url))
            .bearer_auth(bearer)
            .header("content-type", "text/csv")
            .body(
                "number,country,type,region,locality,voice,sms,monthly_price\n\
                 +18005550144,US,toll-free,,,true,false,2.00\n",
            )
            .send()
    };
    let refused = import("not-the-token".into()).await.unwrap();
    assert_eq!(refused.status(), 401);
    let response = import(token).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["stocked"], 1, "{body}");
    eventually(10, "the toll-free number", || async {
        let (_, body) = dialtone.get("AvailablePhoneNumbers/US/TollFree.json").await;
        (found(&body) == ["+18005550144"]).then_some(())
    })
    .await;

    // Only inventory numbers can be bought here; by area code, the first free one.
    let (status, body) = dialtone
        .post(
            "IncomingPhoneNumbers.json",
            &[("PhoneNumber", "+15105550100")],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 21422, "{body}");
    let app = TwimlApp::start().await;
    app.set_auth_token(&dialtone.auth_token);
    app.twiml("/voice", "<Response><Say>Welcome.</Say></Response>");
    let voice_url = app.url("/voice");
    let (status, number) = dialtone
        .post(
            "IncomingPhoneNumbers.json",
            &[("AreaCode", "415"), ("VoiceUrl", voice_url.as_str())],
        )
        .await;
    assert_eq!(status, 201, "{number}");
    assert_eq!(number["phone_number"], "+14155550140");

    // The bought number takes calls.
    let rtp = RtpSink::start();
    let caller = Sipp::scenario("inbound_dialtone_hangs_up.xml")
        .key("dialed", "+14155550140")
        .key("rtp_port", rtp.port)
        .run(dialtone.sip_addr())
        .await;
    caller.assert_success("the caller", &dialtone);
    assert_eq!(app.requests_to("/voice").len(), 1);
}
