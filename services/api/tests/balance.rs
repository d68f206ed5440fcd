//! Paying per minute: the balance is the operator's credits less the account's charges
//! (rated calls and number rentals, charged on purchase and each month by the log's
//! clock), exact to the micro-unit.

mod support;

use dialtone_events::payload::{AccountCredited, NodeHeartbeat, RatePrice, RatePublished};
use dialtone_events::sid::{NodeSid, RateSid};
use dialtone_events::{ExpectedVersion, NewEvent};
use dialtone_projections::inventory::{parse_inventory_csv, stock_numbers};
use reqwest::StatusCode;
use serde_json::Value;
use support::Server;
use time::OffsetDateTime;

async fn append_at(s: &Server, stream: &str, event: NewEvent) {
    let appended = s
        .log
        .append(stream, ExpectedVersion::Any, vec![event])
        .await
        .unwrap();
    s.runner
        .handle()
        .wait_for(&appended.positions)
        .await
        .unwrap();
}

/// A heartbeat at `at`: the log's clock moving on with nothing else happening.
async fn tick(s: &Server, at: OffsetDateTime) {
    let beat = NodeHeartbeat {
        node: "node-1".into(),
        instance: "i".into(),
        lease_ms: 10_000,
        roles: vec![],
        sip: None,
    };
    append_at(
        s,
        NodeSid::of("node-1").as_str(),
        NewEvent::new("", beat).at(at),
    )
    .await;
}

async fn balance(s: &Server) -> Value {
    let (status, body) = s.get(&s.a, &s.url(&s.a, "Balance.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn rentals(usage: &Value) -> (u64, String) {
    let records = usage["usage_records"].as_array().unwrap();
    let rental = records
        .iter()
        .find(|r| r["category"] == "phonenumbers")
        .unwrap_or_else(|| panic!("no phonenumbers usage: {usage}"));
    (
        rental["count"].as_str().unwrap().parse().unwrap(),
        rental["price"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn the_balance_is_credits_less_calls_and_rentals() {
    let s = Server::start().await;
    let fresh = balance(&s).await;
    assert_eq!(fresh["balance"], "0.00000");
    assert_eq!(fresh["currency"], "USD");
    assert_eq!(fresh["account_sid"], s.a.sid.as_str());

    let t0 = OffsetDateTime::now_utc() - time::Duration::days(70);
    let file = parse_inventory_csv(
        "number,country,type,region,locality,voice,sms,monthly_price\n\
         +14155550160,US,local,CA,San Francisco,true,true,1.15\n",
    )
    .unwrap();
    stock_numbers(s.log.as_ref(), &file.rows, |_| {})
        .await
        .unwrap();
    let rates = RatePublished {
        effective_from: t0 - time::Duration::hours(1),
        currency: "USD".into(),
        prices: vec![RatePrice {
            category: "calls-inbound".into(),
            per_minute_micros: 8_500,
            prefix: None,
        }],
    };
    append_at(
        &s,
        RateSid::generate().as_str(),
        NewEvent::new(s.a.sid.as_str(), rates).at(t0 - time::Duration::hours(1)),
    )
    .await;
    append_at(
        &s,
        s.a.sid.as_str(),
        NewEvent::new(
            s.a.sid.as_str(),
            AccountCredited {
                amount_micros: 10_000_000,
                currency: "USD".into(),
                reference: Some("card 4242".into()),
            },
        ),
    )
    .await;

    // Buying the number charges its first month.
    let (status, number) = s
        .post(
            &s.a,
            &s.url(&s.a, "IncomingPhoneNumbers.json"),
            &[("AreaCode", "415")],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{number}");
    assert_eq!(balance(&s).await["balance"], "8.85000");
    // A call of 61 s: two started minutes at 0.0085.
    s.call(&s.a.sid, t0, Some(61_000)).await;
    assert_eq!(balance(&s).await["balance"], "8.83300");

    // A month after the purchase the log's clock charges the next month, once.
    let bought = OffsetDateTime::now_utc();
    tick(&s, bought + time::Duration::days(15)).await;
    assert_eq!(balance(&s).await["balance"], "8.83300");
    tick(&s, bought + time::Duration::days(32)).await;
    tick(&s, bought + time::Duration::days(33)).await;
    assert_eq!(balance(&s).await["balance"], "7.68300");
    // (The second month is dated in the future of the wall clock: ask up to it.)
    let until = (bought + time::Duration::days(40)).date();
    let (_, usage) = s
        .get(
            &s.a,
            &s.url(
                &s.a,
                &format!("Usage/Records.json?Category=phonenumbers&EndDate={until}"),
            ),
        )
        .await;
    assert_eq!(rentals(&usage), (2, "2.30000".to_owned()));

    // Released, the number costs nothing more.
    let sid = number["sid"].as_str().unwrap();
    let status = s
        .delete(
            &s.a,
            &s.url(&s.a, &format!("IncomingPhoneNumbers/{sid}.json")),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    tick(&s, bought + time::Duration::days(70)).await;
    assert_eq!(balance(&s).await["balance"], "7.68300");
    // The other account was charged nothing.
    let (_, other) = s.get(&s.b, &s.url(&s.b, "Balance.json")).await;
    assert_eq!(other["balance"], "0.00000");
}
