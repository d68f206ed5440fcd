//! The account resource and its API keys, end to end: fetch and update the account, create
//! a key (its secret shown once), authenticate with it wherever the auth token works, delete
//! it (it stops working); suspend the account (reads work, writes fail with 20005, its
//! number rejects calls), make it active again; close it (final).

use dialtone_tests::{Backend, Dialtone, Sipp};
use serde_json::Value;

const NUMBER: &str = "+14155550321";

async fn as_user(dialtone: &Dialtone, user: &str, password: &str, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!(
            "{}/2010-04-01/Accounts/{}/{path}",
            dialtone.http_url, dialtone.account_sid
        ))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// GET/POST on the account resource itself (`/2010-04-01/Accounts/{AC}.json`).
async fn account(dialtone: &Dialtone, form: Option<&[(&str, &str)]>) -> (u16, Value) {
    let url = format!(
        "{}/2010-04-01/Accounts/{}.json",
        dialtone.http_url, dialtone.account_sid
    );
    let client = reqwest::Client::new();
    let request = match form {
        Some(form) => client.post(url).form(form),
        None => client.get(url),
    };
    let response = request
        .basic_auth(&dialtone.account_sid, Some(&dialtone.auth_token))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_keys_and_status_behave_as_on_twilio() {
    let dialtone = Dialtone::start(Backend::Sqlite).await;

    // The account, in Twilio's shape.
    let (status, fetched) = account(&dialtone, None).await;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(fetched["sid"], dialtone.account_sid.as_str());
    assert_eq!(fetched["status"], "active");
    assert_eq!(fetched["type"], "Full");
    assert_eq!(fetched["owner_account_sid"], dialtone.account_sid.as_str());
    assert!(
        fetched["auth_token"].is_null(),
        "the token is never shown again"
    );
    assert!(fetched["subresource_uris"]["calls"]
        .as_str()
        .unwrap()
        .ends_with("/Calls.json"));
    let (status, renamed) = account(&dialtone, Some(&[("FriendlyName", "Acme")])).await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["friendly_name"], "Acme");
    let (status, bad) = account(&dialtone, Some(&[("Status", "asleep")])).await;
    assert_eq!((status, bad["code"].as_u64()), (400, Some(20001)), "{bad}");

    // An API key: the secret once, then Basic auth with it works like the token.
    let (status, key) = dialtone.post("Keys.json", &[("FriendlyName", "ci")]).await;
    assert_eq!(status, 201, "{key}");
    let (key_sid, secret) = (
        key["sid"].as_str().unwrap().to_owned(),
        key["secret"].as_str().unwrap().to_owned(),
    );
    assert!(key_sid.starts_with("SK") && secret.len() == 32, "{key}");
    let (status, listed) = dialtone.get("Keys.json").await;
    assert_eq!(status, 200);
    assert_eq!(listed["keys"][0]["sid"], key_sid.as_str());
    assert!(listed["keys"][0].get("secret").is_none(), "{listed}");
    let (status, calls) = as_user(&dialtone, &key_sid, &secret, "Calls.json").await;
    assert_eq!(status, 200, "{calls}");
    let (status, _) = as_user(&dialtone, &key_sid, "wrong-secret", "Calls.json").await;
    assert_eq!(status, 401);
    let (status, _) = as_user(&dialtone, &key_sid, &dialtone.auth_token, "Calls.json").await;
    assert_eq!(status, 401, "the token is not the key's secret");
    let (status, renamed) = dialtone
        .post(
            &format!("Keys/{key_sid}.json"),
            &[("FriendlyName", "deploys")],
        )
        .await;
    assert_eq!(
        (status, renamed["friendly_name"].as_str()),
        (200, Some("deploys"))
    );
    assert_eq!(dialtone.delete(&format!("Keys/{key_sid}.json")).await, 204);
    let (status, _) = as_user(&dialtone, &key_sid, &secret, "Calls.json").await;
    assert_eq!(status, 401, "a deleted key no longer authenticates");
    let (status, _) = dialtone.get(&format!("Keys/{key_sid}.json")).await;
    assert_eq!(status, 404);

    // Suspended: reads work, writes fail with 20005 (on its subaccounts too), the number
    // rejects calls.
    dialtone
        .provision(NUMBER, "http://127.0.0.1:9/voice", None)
        .await;
    let http = reqwest::Client::new();
    let subaccount: Value = http
        .post(format!("{}/2010-04-01/Accounts.json", dialtone.http_url))
        .basic_auth(&dialtone.account_sid, Some(&dialtone.auth_token))
        .form(&[("FriendlyName", "customer")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sub_keys = format!(
        "{}/2010-04-01/Accounts/{}/Keys.json",
        dialtone.http_url,
        subaccount["sid"].as_str().unwrap()
    );
    let (status, suspended) = account(&dialtone, Some(&[("Status", "suspended")])).await;
    assert_eq!(
        (status, suspended["status"].as_str()),
        (200, Some("suspended"))
    );
    let (status, _) = dialtone.get("IncomingPhoneNumbers.json").await;
    assert_eq!(status, 200);
    let (status, refused) = dialtone
        .post("Keys.json", &[("FriendlyName", "while suspended")])
        .await;
    assert_eq!(
        (status, refused["code"].as_u64()),
        (401, Some(20005)),
        "{refused}"
    );
    let through_parent = http
        .post(&sub_keys)
        .basic_auth(&dialtone.account_sid, Some(&dialtone.auth_token))
        .send()
        .await
        .unwrap();
    assert_eq!(
        through_parent.status(),
        401,
        "a suspended parent wrote to its subaccount"
    );
    let caller = Sipp::scenario("inbound_forbidden.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", 4000)
        .run(dialtone.sip_addr())
        .await;
    caller.assert_success("the suspended account's number took a call", &dialtone);

    // Active again: writes work.
    let (status, active) = account(&dialtone, Some(&[("Status", "active")])).await;
    assert_eq!((status, active["status"].as_str()), (200, Some("active")));
    let (status, _) = dialtone.post("Keys.json", &[]).await;
    assert_eq!(status, 201);

    // Closed is final: nothing works any more, not even reopening.
    let (status, closed) = account(&dialtone, Some(&[("Status", "closed")])).await;
    assert_eq!((status, closed["status"].as_str()), (200, Some("closed")));
    let (status, refused) = account(&dialtone, Some(&[("Status", "active")])).await;
    assert_eq!(
        (status, refused["code"].as_u64()),
        (401, Some(20005)),
        "{refused}"
    );
    let (status, _) = dialtone.get("Calls.json").await;
    assert_eq!(status, 401);

    // All of it is on the account's stream, and the chain verifies.
    let audit = dialtone.cli(&["audit", "verify"]);
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_with_a_voice_application_uses_the_applications_urls() {
    let dialtone = Dialtone::start(Backend::Sqlite).await;
    let app = dialtone_tests::TwimlApp::start().await;
    app.set_auth_token(&dialtone.auth_token);
    app.twiml(
        "/app-voice",
        "<Response><Say>From the application.</Say><Pause length=\"5\"/></Response>",
    );
    app.twiml(
        "/number-voice",
        "<Response><Say>From the number.</Say><Pause length=\"5\"/></Response>",
    );
    let (status, created) = dialtone
        .post(
            "Applications.json",
            &[
                ("FriendlyName", "IVR"),
                ("VoiceUrl", &app.url("/app-voice")),
            ],
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let ap = created["sid"].as_str().unwrap().to_owned();
    assert!(ap.starts_with("AP"));
    assert_eq!(created["voice_method"], "POST");
    let (status, bad) = dialtone
        .post(
            "IncomingPhoneNumbers.json",
            &[
                ("PhoneNumber", NUMBER),
                ("VoiceApplicationSid", "AP00000000000000000000000000000000"),
            ],
        )
        .await;
    assert_eq!((status, bad["code"].as_u64()), (400, Some(21218)), "{bad}");
    let (status, number) = dialtone
        .post(
            "IncomingPhoneNumbers.json",
            &[
                ("PhoneNumber", NUMBER),
                ("VoiceUrl", &app.url("/number-voice")),
                ("VoiceApplicationSid", &ap),
            ],
        )
        .await;
    assert_eq!(status, 201, "{number}");
    assert_eq!(number["voice_application_sid"], ap.as_str());

    let rtp = dialtone_tests::RtpSink::start();
    Sipp::scenario("inbound_call.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .pause_ms(1_500)
        .run(dialtone.sip_addr())
        .await
        .assert_success("the call", &dialtone);
    assert_eq!(
        app.requests_to("/app-voice").len(),
        1,
        "{:?}",
        app.requests()
    );
    assert!(app.requests_to("/number-voice").is_empty());

    // Deleted, the number falls back to its own URL.
    assert_eq!(
        dialtone.delete(&format!("Applications/{ap}.json")).await,
        204
    );
    let (status, _) = dialtone.get(&format!("Applications/{ap}.json")).await;
    assert_eq!(status, 404);
    Sipp::scenario("inbound_call.xml")
        .key("dialed", NUMBER)
        .key("rtp_port", rtp.port)
        .pause_ms(1_500)
        .run(dialtone.sip_addr())
        .await
        .assert_success("the second call", &dialtone);
    assert_eq!(app.requests_to("/number-voice").len(), 1);
}
