//! The real router on an ephemeral port, a temp-dir SQLite log, a running projection runner,
//! and reqwest as the client (see `support`).

mod support;

use dialtone_events::sid::CallSid;
use reqwest::StatusCode;
use serde_json::Value;
use support::{assert_twilio_error, Account, Server};
use time::OffsetDateTime;

#[tokio::test]
async fn bad_credentials_get_401_with_twilio_body() {
    let s = Server::start().await;
    let url = s.url(&s.a, "Calls.json");
    let response = s.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Basic ")));
    assert_twilio_error(&response.json().await.unwrap(), 20003, 401);

    let wrong = Account {
        sid: s.a.sid.clone(),
        token: s.b.token.clone(),
    };
    let (status, body) = s.get(&wrong, &url).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_twilio_error(&body, 20003, 401);

    let response = s
        .client
        .get(&url)
        .header("authorization", "Basic not-base64!")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Valid credentials for B on A's path: A's account does not exist for B.
    let (status, body) = s.get(&s.b, &url).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_twilio_error(&body, 20404, 404);

    let (status, _) = s.get(&s.a, &url).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn incoming_phone_numbers_round_trip() {
    let s = Server::start().await;
    let list = s.url(&s.a, "IncomingPhoneNumbers.json");
    let (status, created) = s
        .post(
            &s.a,
            &list,
            &[
                ("PhoneNumber", "+1 (415) 555-0199"),
                ("VoiceUrl", "https://app.example/voice"),
                ("VoiceMethod", "GET"),
                ("StatusCallback", "https://app.example/status"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let sid = created["sid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("PN") && sid.len() == 34);
    assert_eq!(created["phone_number"], "+14155550199");
    assert_eq!(created["friendly_name"], "(415) 555-0199");
    assert_eq!(created["voice_url"], "https://app.example/voice");
    assert_eq!(created["voice_method"], "GET");
    assert_eq!(created["voice_fallback_url"], "");
    assert_eq!(created["account_sid"], s.a.sid.as_str());
    assert_eq!(created["capabilities"]["voice"], true);
    assert_eq!(
        created["uri"],
        format!(
            "/2010-04-01/Accounts/{}/IncomingPhoneNumbers/{sid}.json",
            s.a.sid
        )
    );
    assert!(created["date_created"].as_str().unwrap().ends_with("+0000"));
    // The SIP edge sees it at once.
    let route = s.numbers.lookup("+14155550199").expect("directory updated");
    assert_eq!(route.sid, sid);

    let one = s.url(&s.a, &format!("IncomingPhoneNumbers/{sid}.json"));
    let (status, fetched) = s.get(&s.a, &one).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, created);

    // Filters.
    let (_, page) = s.get(&s.a, &format!("{list}?PhoneNumber=555*199")).await;
    assert_eq!(page["incoming_phone_numbers"].as_array().unwrap().len(), 1);
    let (_, page) = s.get(&s.a, &format!("{list}?PhoneNumber=666")).await;
    assert_eq!(page["incoming_phone_numbers"].as_array().unwrap().len(), 0);
    let (_, page) = s
        .get(&s.a, &format!("{list}?FriendlyName=%28415%29%20555-0199"))
        .await;
    assert_eq!(page["incoming_phone_numbers"].as_array().unwrap().len(), 1);

    // A number already provisioned (to any account) is not available.
    let (status, body) = s
        .post(
            &s.b,
            &s.url(&s.b, "IncomingPhoneNumbers.json"),
            &[("PhoneNumber", "+14155550199")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21422, 400);
    let (status, body) = s.post(&s.a, &list, &[("PhoneNumber", "call me")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21421, 400);
    let (status, body) = s
        .post(
            &s.a,
            &list,
            &[("PhoneNumber", "+14155550111"), ("VoiceUrl", "not a url")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21205, 400);

    // Update: change one field, clear another, keep the rest.
    let (status, updated) = s
        .post(
            &s.a,
            &one,
            &[
                ("VoiceUrl", "https://app.example/v2"),
                ("StatusCallback", ""),
                ("FriendlyName", "Support"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["voice_url"], "https://app.example/v2");
    assert_eq!(updated["voice_method"], "GET");
    assert_eq!(updated["status_callback"], "");
    assert_eq!(updated["friendly_name"], "Support");
    let (_, fetched) = s.get(&s.a, &one).await;
    assert_eq!(fetched, updated);
    assert_eq!(
        s.numbers
            .lookup("+14155550199")
            .unwrap()
            .config
            .voice_url
            .as_deref(),
        Some("https://app.example/v2")
    );
    // Two updates in a row: the second uses the version the first produced.
    let (status, _) = s
        .post(
            &s.a,
            &one,
            &[("VoiceFallbackUrl", "https://app.example/fallback")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Release.
    assert_eq!(s.delete(&s.a, &one).await, StatusCode::NO_CONTENT);
    let (status, body) = s.get(&s.a, &one).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_twilio_error(&body, 20404, 404);
    assert!(s.numbers.lookup("+14155550199").is_none());
    assert_eq!(s.delete(&s.a, &one).await, StatusCode::NOT_FOUND);
    // Released numbers can be provisioned again, by anyone.
    let (status, _) = s
        .post(
            &s.b,
            &s.url(&s.b, "IncomingPhoneNumbers.json"),
            &[("PhoneNumber", "+14155550199")],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn accounts_never_see_each_others_resources() {
    let s = Server::start().await;
    let (_, created) = s
        .post(
            &s.a,
            &s.url(&s.a, "IncomingPhoneNumbers.json"),
            &[("PhoneNumber", "+14155550142")],
        )
        .await;
    let pn = created["sid"].as_str().unwrap().to_owned();
    let call = s
        .call(&s.a.sid, OffsetDateTime::now_utc(), Some(5_000))
        .await;

    // B, on its own path, finds none of A's things.
    let (_, page) = s.get(&s.b, &s.url(&s.b, "IncomingPhoneNumbers.json")).await;
    assert_eq!(page["incoming_phone_numbers"].as_array().unwrap().len(), 0);
    let (_, page) = s.get(&s.b, &s.url(&s.b, "Calls.json")).await;
    assert_eq!(page["calls"].as_array().unwrap().len(), 0);
    let b_pn = s.url(&s.b, &format!("IncomingPhoneNumbers/{pn}.json"));
    assert_eq!(s.get(&s.b, &b_pn).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        s.post(&s.b, &b_pn, &[("VoiceUrl", "https://evil.example/")])
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.delete(&s.b, &b_pn).await, StatusCode::NOT_FOUND);
    assert_eq!(
        s.get(&s.b, &s.url(&s.b, &format!("Calls/{call}.json")))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let events = format!("{}/v1/Accounts/{}/Calls/{call}/Events", s.base, s.b.sid);
    assert_eq!(s.get(&s.b, &events).await.0, StatusCode::NOT_FOUND);
    // B cannot use A's path either.
    assert_eq!(
        s.get(&s.b, &s.url(&s.a, &format!("Calls/{call}.json")))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // A still has everything.
    assert_eq!(
        s.get(
            &s.a,
            &s.url(&s.a, &format!("IncomingPhoneNumbers/{pn}.json"))
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        s.get(&s.a, &s.url(&s.a, &format!("Calls/{call}.json")))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn calls_list_and_fetch_in_twilio_shape() {
    let s = Server::start().await;
    let t0 = time::macros::datetime!(2025-03-10 12:00:00 UTC);
    let answered = s.call(&s.a.sid, t0, Some(15_400)).await;
    let busy = s
        .call(&s.a.sid, t0 + time::Duration::minutes(1), None)
        .await;

    let (status, call) = s
        .get(&s.a, &s.url(&s.a, &format!("Calls/{answered}.json")))
        .await;
    assert_eq!(status, StatusCode::OK, "{call}");
    assert_eq!(call["sid"], answered.as_str());
    assert_eq!(call["account_sid"], s.a.sid.as_str());
    assert_eq!(call["status"], "completed");
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["from"], "+14155550100");
    assert_eq!(call["from_formatted"], "(415) 555-0100");
    assert_eq!(call["to_formatted"], "(415) 555-0199");
    assert_eq!(call["duration"], "15");
    assert_eq!(call["price"], "-0.00850");
    assert_eq!(call["price_unit"], "USD");
    assert_eq!(call["date_created"], "Mon, 10 Mar 2025 12:00:00 +0000");
    assert_eq!(call["start_time"], "Mon, 10 Mar 2025 12:00:01 +0000");
    assert_eq!(call["end_time"], "Mon, 10 Mar 2025 12:00:16 +0000");
    assert_eq!(call["api_version"], "2010-04-01");
    assert_eq!(call["queue_time"], "0");
    assert_eq!(call["parent_call_sid"], Value::Null);
    assert!(call["phone_number_sid"].as_str().unwrap().starts_with("PN"));
    assert_eq!(
        call["uri"],
        format!("/2010-04-01/Accounts/{}/Calls/{answered}.json", s.a.sid)
    );
    assert_eq!(
        call["subresource_uris"]["recordings"],
        format!(
            "/2010-04-01/Accounts/{}/Calls/{answered}/Recordings.json",
            s.a.sid
        )
    );

    let (_, call) = s
        .get(&s.a, &s.url(&s.a, &format!("Calls/{busy}.json")))
        .await;
    assert_eq!(call["status"], "busy");
    assert_eq!(call["duration"], Value::Null);
    assert_eq!(call["start_time"], Value::Null);
    assert_eq!(call["price"], Value::Null);
    assert_eq!(call["price_unit"], "USD");

    let (status, page) = s.get(&s.a, &s.url(&s.a, "Calls.json")).await;
    assert_eq!(status, StatusCode::OK);
    let sids: Vec<&str> = page["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["sid"].as_str().unwrap())
        .collect();
    assert_eq!(sids, vec![busy.as_str(), answered.as_str()], "newest first");
    assert_eq!(page["page"], 0);
    assert_eq!(page["page_size"], 50);
    assert_eq!(page["next_page_uri"], Value::Null);
    assert_eq!(page["previous_page_uri"], Value::Null);

    let s = &s;
    let filtered = |q: &str| {
        let url = s.url(&s.a, &format!("Calls.json?{q}"));
        async move { s.get(&s.a, &url).await.1["calls"].as_array().unwrap().len() }
    };
    assert_eq!(filtered("Status=busy").await, 1);
    assert_eq!(filtered("Status=in-progress").await, 0);
    assert_eq!(filtered("To=%2B14155550199").await, 2);
    assert_eq!(filtered("From=%2B10000000000").await, 0);
    assert_eq!(filtered("StartTime=2025-03-10").await, 1);
    assert_eq!(filtered("StartTime%3E=2025-03-11").await, 0);
    assert_eq!(filtered("StartTime%3C=2025-03-10").await, 1);
    let (status, body) = s.get(&s.a, &s.url(&s.a, "Calls.json?Status=bogus")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 20001, 400);
    let missing = CallSid::generate();
    let (status, _) = s
        .get(&s.a, &s.url(&s.a, &format!("Calls/{missing}.json")))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.get(&s.a, &s.url(&s.a, "Calls/not-a-sid.json")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = s
        .post(&s.a, &s.url(&s.a, "Calls.json"), &[("To", "+1415")])
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_twilio_error(&body, 20501, 501);
}

#[tokio::test]
async fn paging_follows_next_and_previous_uris() {
    let s = Server::start().await;
    let t0 = time::macros::datetime!(2025-03-10 12:00:00 UTC);
    let mut expected = Vec::new();
    for i in 0..7 {
        expected.push(
            s.call(&s.a.sid, t0 + time::Duration::seconds(i), None)
                .await
                .to_string(),
        );
    }
    expected.reverse();
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut url = s.url(&s.a, "Calls.json?PageSize=3&Status=busy");
    loop {
        let (status, page) = s.get(&s.a, &url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["page_size"], 3);
        seen.extend(
            page["calls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["sid"].as_str().unwrap().to_owned()),
        );
        pages.push(page.clone());
        match page["next_page_uri"].as_str() {
            Some(next) => {
                assert!(
                    next.contains("Status=busy"),
                    "filters survive paging: {next}"
                );
                url = format!("{}{next}", s.base);
            }
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[1]["page"], 1);
    assert_eq!(pages[1]["start"], 3);
    assert_eq!(pages[1]["end"], 5);
    assert_eq!(pages[2]["start"], 6);
    assert!(pages[0]["first_page_uri"]
        .as_str()
        .unwrap()
        .ends_with("PageSize=3&Page=0"));
    // Walking back from the last page gives the middle page again.
    let previous = pages[2]["previous_page_uri"].as_str().unwrap();
    let (_, back) = s.get(&s.a, &format!("{}{previous}", s.base)).await;
    assert_eq!(back["calls"], pages[1]["calls"]);
    assert_eq!(back["page"], 1);
    // Page index without a token is an offset.
    let (_, by_index) = s
        .get(&s.a, &s.url(&s.a, "Calls.json?PageSize=3&Page=2"))
        .await;
    assert_eq!(by_index["calls"], pages[2]["calls"]);
    let (status, _) = s
        .get(&s.a, &s.url(&s.a, "Calls.json?PageToken=garbage"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

fn record<'a>(page: &'a Value, category: &str) -> &'a Value {
    page["usage_records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["category"] == category)
        .unwrap_or_else(|| panic!("no {category} record in {page}"))
}

#[tokio::test]
async fn usage_records_sum_billed_minutes() {
    let s = Server::start().await;
    let now = OffsetDateTime::now_utc() - time::Duration::minutes(5);
    s.call(&s.a.sid, now, Some(400)).await; // 1 minute
    s.call(&s.a.sid, now, Some(61_000)).await; // 2 minutes
    s.call(&s.a.sid, now, None).await; // rejected: nothing
    s.call(&s.b.sid, now, Some(10_000)).await; // another account
    let day = dialtone_projections::billing::format_day(now.date());

    let (status, page) = s.get(&s.a, &s.url(&s.a, "Usage/Records.json")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let calls = record(&page, "calls");
    assert_eq!(calls["count"], "2");
    assert_eq!(calls["usage"], "3");
    assert_eq!(calls["usage_unit"], "minutes");
    assert_eq!(calls["count_unit"], "calls");
    assert_eq!(calls["price"], "0.02550");
    assert_eq!(calls["price_unit"], "usd");
    assert_eq!(calls["account_sid"], s.a.sid.as_str());
    assert_eq!(calls["end_date"], day.as_str());
    assert_eq!(record(&page, "calls-inbound")["usage"], "3");
    assert_eq!(record(&page, "calls-outbound")["usage"], "0");

    let (_, page) = s
        .get(
            &s.a,
            &s.url(&s.a, "Usage/Records.json?Category=calls-inbound"),
        )
        .await;
    assert_eq!(page["usage_records"].as_array().unwrap().len(), 1);
    let (_, page) = s
        .get(
            &s.a,
            &s.url(&s.a, "Usage/Records/Today.json?Category=calls"),
        )
        .await;
    assert_eq!(record(&page, "calls")["usage"], "3");
    let (_, page) = s
        .get(
            &s.a,
            &s.url(
                &s.a,
                &format!("Usage/Records/Daily.json?Category=calls&StartDate=-2days&EndDate={day}"),
            ),
        )
        .await;
    let records = page["usage_records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{page}");
    assert_eq!(records[2]["start_date"], day.as_str());
    assert_eq!(records[2]["usage"], "3");
    assert_eq!(records[0]["usage"], "0");
    let (_, page) = s
        .get(
            &s.a,
            &s.url(&s.a, "Usage/Records/Yesterday.json?Category=calls"),
        )
        .await;
    assert_eq!(record(&page, "calls")["usage"], "0");
    let (status, _) = s.get(&s.a, &s.url(&s.a, "Usage/Records/Hourly.json")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, page) = s
        .get(&s.b, &s.url(&s.b, "Usage/Records.json?Category=calls"))
        .await;
    assert_eq!(record(&page, "calls")["usage"], "1");
}

#[tokio::test]
async fn call_events_are_the_stored_cloudevents_in_order() {
    let s = Server::start().await;
    let call = s
        .call(&s.a.sid, OffsetDateTime::now_utc(), Some(3_000))
        .await;
    let url = format!("{}/v1/Accounts/{}/Calls/{call}/Events", s.base, s.a.sid);
    let response = s
        .client
        .get(&url)
        .basic_auth(s.a.sid.as_str(), Some(&s.a.token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/cloudevents-batch+json"
    );
    let body = response.text().await.unwrap();
    let stored = s.log.read_stream(call.as_str(), 1).await.unwrap();
    let expected = format!(
        "[{}]",
        stored
            .iter()
            .map(|r| r.event.to_json())
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(body, expected);
    let parsed: Vec<Value> = serde_json::from_str(&body).unwrap();
    let types: Vec<&str> = parsed.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "dialtone.call.initiated",
            "dialtone.call.ringing",
            "dialtone.call.answered",
            "dialtone.call.completed"
        ]
    );
    assert_eq!(parsed[3]["sequence"], 4);

    let unauthenticated = s.client.get(&url).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let missing = format!(
        "{}/v1/Accounts/{}/Calls/{}/Events",
        s.base,
        s.a.sid,
        CallSid::generate()
    );
    assert_eq!(s.get(&s.a, &missing).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_and_metrics() {
    let s = Server::start().await;
    let response = s
        .client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    assert!(body.starts_with("ok\n"), "{body}");
    assert!(body.contains("log: sqlite"), "{body}");

    // Some traffic, then the counters show it.
    let _ = s.get(&s.a, &s.url(&s.a, "Calls.json")).await;
    let response = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(text.contains("dialtone_api_requests_total"), "{text}");
    assert!(
        text.contains("route=\"/2010-04-01/Accounts/{account_sid}/Calls.json\""),
        "requests are labelled by route template, not by account: {text}"
    );
    assert!(text.contains("dialtone_projection_events_total"), "{text}");

    let response = s
        .client
        .get(format!("{}/nope", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_twilio_error(&response.json().await.unwrap(), 20404, 404);
}

#[tokio::test]
async fn rate_tables_are_published_per_account_and_price_its_calls() {
    let server = Server::start().await;
    let url = format!("{}/v1/Accounts/{}/RateTables", server.base, server.a.sid);
    let (status, table) = server
        .post(
            &server.a,
            &url,
            &[
                ("EffectiveFrom", "2025-01-01T00:00:00Z"),
                ("Currency", "usd"),
                ("Price", "calls-inbound:0.0100"),
                ("Price", "calls-outbound:+44:0.05"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{table}");
    assert!(table["sid"].as_str().unwrap().starts_with("RT"));
    assert_eq!(table["scope"], "account");
    assert_eq!(table["currency"], "USD");
    let prices = table["prices"].as_array().unwrap();
    assert_eq!(prices.len(), 2);
    assert!(prices.iter().any(|p| p["prefix"] == "+44"
        && p["per_minute_micros"] == 50_000
        && p["per_minute"] == "0.050000"));
    // A's calls are priced with it; B's are not.
    // The calls end after the table was published (a table never re-prices a finished leg).
    let t0 = OffsetDateTime::now_utc();
    let a_call = server.call(&server.a.sid, t0, Some(30_000)).await;
    let b_call = server.call(&server.b.sid, t0, Some(30_000)).await;
    let (_, a) = server
        .get(
            &server.a,
            &server.url(&server.a, &format!("Calls/{a_call}.json")),
        )
        .await;
    assert_eq!(a["price"], "-0.01000", "{a}");
    let (_, b) = server
        .get(
            &server.b,
            &server.url(&server.b, &format!("Calls/{b_call}.json")),
        )
        .await;
    assert_eq!(b["price"], "-0.00850", "{b}");
    let (status, list) = server.get(&server.a, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["rate_tables"].as_array().unwrap().len(), 1);
    let b_url = format!("{}/v1/Accounts/{}/RateTables", server.base, server.b.sid);
    let (_, list) = server.get(&server.b, &b_url).await;
    assert_eq!(
        list["rate_tables"].as_array().unwrap().len(),
        0,
        "not B's table"
    );
    // Bad input names the parameter.
    for (form, name) in [
        (vec![("Price", "calls-inbound:0.0000001")], "Price"),
        (vec![("Price", "calls-inbound:+4x:1")], "Price"),
        (
            vec![("Price", "calls-inbound:1"), ("Currency", "dollars")],
            "Currency",
        ),
        (
            vec![("Price", "calls-inbound:1"), ("EffectiveFrom", "soon")],
            "EffectiveFrom",
        ),
        (vec![], "Price"),
    ] {
        let (status, body) = server.post(&server.a, &url, &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form:?}: {body}");
        assert!(body["message"].as_str().unwrap().contains(name), "{body}");
    }
}
