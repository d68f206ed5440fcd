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

    // Suspended: reads work, writes fail with 20005, the number rejects calls.
    dialtone
        .provision(NUMBER, "http://127.0.0.1:9/voice", None)
        .await;
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
