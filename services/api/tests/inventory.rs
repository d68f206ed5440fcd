//! The number inventory through the API: searching the available numbers with Twilio's
//! filters, buying by number or by area code, Twilio's errors, and a released number aging
//! before it is sold again.

mod support;

use dialtone_projections::inventory::{parse_inventory_csv, stock_numbers};
use reqwest::StatusCode;
use serde_json::Value;
use support::{assert_twilio_error, Server};

const INVENTORY: &str = "number,country,type,region,locality,voice,sms,monthly_price
+14155550100,US,local,CA,San Francisco,true,true,1.15
+14155550101,US,local,CA,San Francisco,true,false,1.15
+12125550102,US,local,NY,New York,true,true,1.15
+18005550103,US,toll-free,,,true,false,2.00
";

async fn stocked() -> Server {
    let server = Server::start().await;
    let file = parse_inventory_csv(INVENTORY).unwrap();
    assert!(file.refused.is_empty(), "{:?}", file.refused);
    stock_numbers(server.log.as_ref(), &file.rows, |_| {})
        .await
        .unwrap();
    server.runner.catch_up(server.log.as_ref()).await.unwrap();
    server
}

fn numbers(body: &Value) -> Vec<String> {
    body["available_phone_numbers"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|n| n["phone_number"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn available_numbers_are_searched_with_twilios_filters() {
    let s = stocked().await;
    let search = |query: &str| s.url(&s.a, &format!("AvailablePhoneNumbers/{query}"));
    let (status, body) = s.get(&s.a, &search("US/Local.json?AreaCode=415")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(numbers(&body), ["+14155550100", "+14155550101"]);
    let first = &body["available_phone_numbers"][0];
    assert_eq!(first["friendly_name"], "(415) 555-0100");
    assert_eq!(first["iso_country"], "US");
    assert_eq!(first["region"], "CA");
    assert_eq!(first["locality"], "San Francisco");
    assert_eq!(first["capabilities"]["voice"], true);
    assert_eq!(first["capabilities"]["SMS"], true);

    let found = |query: &'static str| {
        let url = search(query);
        let s = &s;
        async move {
            let (status, body) = s.get(&s.a, &url).await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            numbers(&body)
        }
    };
    assert_eq!(
        found("US/Local.json?Contains=*0101").await,
        ["+14155550101"]
    );
    // Letters are keypad digits: JKL = 555.
    assert_eq!(
        found("US/Local.json?Contains=212JKL").await,
        ["+12125550102"]
    );
    assert_eq!(found("US/Local.json?InRegion=NY").await, ["+12125550102"]);
    assert_eq!(
        found("US/Local.json?InLocality=san%20francisco&SmsEnabled=false").await,
        ["+14155550101"]
    );
    assert_eq!(found("US/Local.json?PageSize=1").await, ["+12125550102"]);
    assert_eq!(found("US/TollFree.json").await, ["+18005550103"]);
    assert!(found("US/Mobile.json").await.is_empty());

    // A country the inventory has nothing of, or another type: 404 (20404).
    let (status, body) = s.get(&s.a, &search("GB/Local.json")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_twilio_error(&body, 20404, 404);
    let (status, _) = s.get(&s.a, &search("US/Landline.json")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in [
        "Contains=5",
        "Contains=55-01",
        "AreaCode=41",
        "SmsEnabled=maybe",
    ] {
        let (status, body) = s.get(&s.a, &search(&format!("US/Local.json?{bad}"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_twilio_error(&body, 20001, 400);
    }
}

#[tokio::test]
async fn numbers_are_bought_from_the_inventory_and_age_after_release() {
    let s = stocked().await;
    let buy = |form: Vec<(&'static str, &'static str)>, who| {
        let s = &s;
        async move {
            let account = if who { &s.a } else { &s.b };
            s.post(account, &s.url(account, "IncomingPhoneNumbers.json"), &form)
                .await
        }
    };
    // The first free number of the area code.
    let (status, number) = buy(vec![("AreaCode", "415")], true).await;
    assert_eq!(status, StatusCode::CREATED, "{number}");
    assert_eq!(number["phone_number"], "+14155550100");
    // The inventory says it takes messages too; a number from outside it carries voice only.
    assert_eq!(number["capabilities"]["sms"], true, "{number}");
    assert_eq!(number["capabilities"]["voice"], true);
    let (_, body) = s
        .get(
            &s.a,
            &s.url(&s.a, "AvailablePhoneNumbers/US/Local.json?AreaCode=415"),
        )
        .await;
    assert_eq!(numbers(&body), ["+14155550101"]);

    // Another account cannot buy a held number (21422), nor find one in an empty area (21452).
    let (status, body) = buy(vec![("PhoneNumber", "+14155550100")], false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21422, 400);
    let (status, body) = buy(vec![("AreaCode", "907")], false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21452, 400);
    let (status, number_b) = buy(vec![("PhoneNumber", "+14155550101")], false).await;
    assert_eq!(status, StatusCode::CREATED, "{number_b}");
    assert_eq!(
        number_b["capabilities"]["sms"], false,
        "stocked with sms=false"
    );
    let (status, body) = buy(vec![("AreaCode", "415")], false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21452, 400);

    // Released, the number ages (30 days by default) before anyone can buy it again.
    let sid = number["sid"].as_str().unwrap();
    let status = s
        .delete(
            &s.a,
            &s.url(&s.a, &format!("IncomingPhoneNumbers/{sid}.json")),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = s
        .get(
            &s.a,
            &s.url(&s.a, "AvailablePhoneNumbers/US/Local.json?AreaCode=415"),
        )
        .await;
    assert!(numbers(&body).is_empty(), "{body}");
    let (status, body) = buy(vec![("PhoneNumber", "+14155550100")], false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21422, 400);
    assert!(
        body["message"].as_str().unwrap().contains("released"),
        "{body}"
    );
    // Numbers outside the inventory stay open unless the operator says otherwise.
    let (status, body) = buy(vec![("PhoneNumber", "+15105550199")], true).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["capabilities"]["sms"], false, "{body}");
}
